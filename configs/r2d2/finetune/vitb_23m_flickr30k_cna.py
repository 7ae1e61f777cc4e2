# R2D2 ViT-B (23M) fine-tuned on Flickr30k-CNA: model zoo r2d2_vitb_23m_ft-flickr30k-cna (Table 1).
_base_ = ['./_base_/r2d2_vitb_23m.py', '../../_base_/datasets/flickr30k_cna.py']
