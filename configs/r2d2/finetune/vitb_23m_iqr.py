# R2D2 ViT-B (23M) fine-tuned on IQR: model zoo r2d2_vitb_23m_ft-iqr (Table 1).
_base_ = ['./_base_/r2d2_vitb_23m.py', '../../_base_/datasets/iqr.py']
