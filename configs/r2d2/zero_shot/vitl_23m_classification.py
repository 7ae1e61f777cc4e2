# Zero-shot image classification with R2D2 ViT-L (23M): each image goes to the class whose Chinese prompts
# it is closest to (cosine of the dual encoder's embeddings, prompts averaged per class), top-1 / top-5.
# Point it at a class-folder set with --cfg-options test_dataloader.dataset.data_root=DIR.
_base_ = ['./_base_/r2d2_vitl_23m.py', '../../_base_/datasets/zero_shot_classification.py']
val_cfg = None
test_cfg = dict(_delete_=True, type='ZeroShotTestLoop')
