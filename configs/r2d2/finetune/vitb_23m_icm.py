# R2D2 ViT-B (23M) fine-tuned on ICM: model zoo r2d2_vitb_23m_ft-icm (Table 2).
_base_ = ['./_base_/r2d2_vitb_23m_matching.py', '../../_base_/datasets/icm.py']
