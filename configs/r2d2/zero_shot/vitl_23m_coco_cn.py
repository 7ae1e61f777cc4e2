# Zero-shot retrieval of R2D2 ViT-L (23M) on the COCO-CN test set (Table 4).
_base_ = ['./_base_/r2d2_vitl_23m.py', '../../_base_/datasets/coco_cn.py']
train_dataloader = None
