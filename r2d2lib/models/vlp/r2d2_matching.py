"""R2D2 fine-tuned for image-text matching (ICM, IQM): FGR on labelled pairs (Appendix C)."""
