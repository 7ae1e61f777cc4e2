# R2D2 ViT-L (23M) fine-tuned for text-to-image retrieval on MUGE; validation set (Table 1).
_base_ = ['./_base_/r2d2_vitl_23m.py', '../../_base_/datasets/muge.py']
