"""Data preprocessor of the matching fine-tuning: image-text pairs with their 0/1 labels."""
