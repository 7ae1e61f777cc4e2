# Zero-shot retrieval of R2D2 ViT-L (23M) on AIC-ICC: the first 10,000 validation images and their
# 50,000 captions (Table 4).
_base_ = ['./_base_/r2d2_vitl_23m.py', '../../_base_/datasets/aic_icc.py']
train_dataloader = None
