# Zero-shot retrieval of R2D2 ViT-L (23M) on the Flickr30k-CN test set (Table 4).
_base_ = ['./_base_/r2d2_vitl_23m.py', '../../_base_/datasets/flickr30k_cn.py']
train_dataloader = None
