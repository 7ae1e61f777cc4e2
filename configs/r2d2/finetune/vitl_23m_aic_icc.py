# R2D2 ViT-L (23M) fine-tuned for retrieval on AIC-ICC; first 10,000 validation images (Table 1).
_base_ = ['./_base_/r2d2_vitl_23m.py', '../../_base_/datasets/aic_icc.py']
