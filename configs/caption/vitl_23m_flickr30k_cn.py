# R2D2 ViT-L (23M) captioning on Flickr30k-CN: the machine-translated training collection, the
# human-translated test collection reported, val selects the checkpoint (VisualSearch layout,
# docs/datasets.md).
_base_ = ['./_base_/captioner_vitl_23m.py']

data_root = 'data/flickr30k-cn'
image_prefix = dict(img_path='flickr30k-images')
train_name, val_name, test_name = 'flickr30kzhbbosontrain', 'flickr30kzhbbosonval', 'flickr30kzhmbosontest'

train_dataloader = dict(dataset=dict(
    type='Flickr30kCNDataset', data_root=data_root, data_prefix=image_prefix,
    ann_file=f'{train_name}/TextData/seg.{train_name}.caption.txt',
    image_list=f'{train_name}/ImageSets/{train_name}.txt', pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(
    type='ImageCaptionsDataset', pipeline={{_base_.test_pipeline}}, test_mode=True,
    dataset=dict(type='Flickr30kCNDataset', data_root=data_root, data_prefix=image_prefix,
                 ann_file=f'{val_name}/TextData/seg.{val_name}.caption.txt',
                 image_list=f'{val_name}/ImageSets/{val_name}.txt')))
test_dataloader = dict(dataset=dict(
    type='ImageCaptionsDataset', pipeline={{_base_.test_pipeline}}, test_mode=True,
    dataset=dict(type='Flickr30kCNDataset', data_root=data_root, data_prefix=image_prefix,
                 ann_file=f'{test_name}/TextData/seg.{test_name}.caption.txt',
                 image_list=f'{test_name}/ImageSets/{test_name}.txt')))
