# R2D2 ViT-B (23M) fine-tuned on IQM: model zoo r2d2_vitb_23m_ft-iqm (Table 2).
_base_ = ['./_base_/r2d2_vitb_23m_matching.py', '../../_base_/datasets/iqm.py']
