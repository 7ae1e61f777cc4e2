# R2D2 ViT-L (23M) fine-tuned for matching on ICM; AUC on the validation set (Table 2).
_base_ = ['./_base_/r2d2_vitl_23m_matching.py', '../../_base_/datasets/icm.py']
