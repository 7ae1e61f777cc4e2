# R2D2 ViT-L (23M) fine-tuned for retrieval on Flickr30k-CNA, tested on the Flickr30k-CN test set (Table 1).
_base_ = ['./_base_/r2d2_vitl_23m.py', '../../_base_/datasets/flickr30k_cna.py']
