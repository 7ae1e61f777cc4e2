# R2D2 ViT-L (23M) captioning on AIC-ICC (AI Challenger): 210K training images with 5 captions each;
# evaluated on the first 10,000 validation images (the released test set has no captions), as the
# retrieval configs do. WenLan's AIC-ICC captioning numbers are in model_zoo/caption/metafile.yml.
_base_ = ['./_base_/captioner_vitl_23m.py']

data_root = 'data/aic-icc'
train_dir = 'ai_challenger_caption_train_20170902'
val_dir = 'ai_challenger_caption_validation_20170910'
val_images = dict(type='AICICCDataset', data_root=data_root,
                  ann_file=f'{val_dir}/caption_validation_annotations_20170910.json',
                  data_prefix=dict(img_path=f'{val_dir}/caption_validation_images_20170910'),
                  max_images=10000)

train_dataloader = dict(dataset=dict(
    type='AICICCDataset', data_root=data_root,
    ann_file=f'{train_dir}/caption_train_annotations_20170902.json',
    data_prefix=dict(img_path=f'{train_dir}/caption_train_images_20170902'),
    pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(type='ImageCaptionsDataset', dataset=val_images,
                                   pipeline={{_base_.test_pipeline}}, test_mode=True))
test_dataloader = val_dataloader
