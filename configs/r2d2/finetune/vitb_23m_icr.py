# R2D2 ViT-B (23M) fine-tuned on ICR: model zoo r2d2_vitb_23m_ft-icr (Table 1).
_base_ = ['./_base_/r2d2_vitb_23m.py', '../../_base_/datasets/icr.py']
