# Zero-shot retrieval of R2D2 ViT-L (23M) for Flickr30k-CNA: its test set is Flickr30k-CN's (Sec. 4.2), so
# the numbers are those of vitl_23m_flickr30k_cn.py, as Table 4 notes.
_base_ = ['./_base_/r2d2_vitl_23m.py', '../../_base_/datasets/flickr30k_cna.py']
train_dataloader = None
