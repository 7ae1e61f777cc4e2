# Zero-shot retrieval of R2D2 ViT-L (23M) on the ICR validation set (Table 4).
_base_ = ['./_base_/r2d2_vitl_23m.py', '../../_base_/datasets/icr.py']
train_dataloader = None
