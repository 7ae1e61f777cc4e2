# Zero-shot matching of R2D2 ViT-L (23M) on the ICM validation set, AUC (Table 4).
_base_ = ['./_base_/r2d2_vitl_23m_matching.py', '../../_base_/datasets/icm.py']
train_dataloader = None
