# Latent text-to-image on COCO-CN's human-written Chinese captions (coco-cn-version1805v1.1 beside MS-COCO
# 2014's images), conditioned on R2D2 ViT-L (23M)'s text encoder; val selects the checkpoint (one image per
# val image, generated from its first caption), test is reported.
_base_ = ['./_base_/latent_vitl_23m.py']

data_root = 'data/coco-cn'
release = 'coco-cn-version1805v1.1'
captions = f'{release}/imageid.human-written-caption.txt'

train_dataloader = dict(dataset=dict(type='COCOCNDataset', data_root=data_root, ann_file=captions,
                                     split_file=f'{release}/coco-cn_train.txt',
                                     pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(
    type='ImageCaptionsDataset', pipeline={{_base_.test_pipeline}}, test_mode=True,
    dataset=dict(type='COCOCNDataset', data_root=data_root, ann_file=captions,
                 split_file=f'{release}/coco-cn_val.txt')))
test_dataloader = dict(dataset=dict(
    type='ImageCaptionsDataset', pipeline={{_base_.test_pipeline}}, test_mode=True,
    dataset=dict(type='COCOCNDataset', data_root=data_root, ann_file=captions,
                 split_file=f'{release}/coco-cn_test.txt')))
