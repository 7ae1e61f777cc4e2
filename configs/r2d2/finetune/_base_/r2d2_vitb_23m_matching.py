# R2D2 ViT-B (23M) fine-tuned for matching (ICM / IQM) as r2d2_vitl_23m_matching.py.
_base_ = ['./r2d2_vitl_23m_matching.py', './vitb_16.py']

model = _base_.vitb_16
load_from = 'checkpoints/r2d2_vitb_23m.pth'
