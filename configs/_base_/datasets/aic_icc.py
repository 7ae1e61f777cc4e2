# AI Challenger image Chinese captioning (AIC-ICC) as released: a JSON array of five captions per image
# (Table A: 210K/1.05M train, 30K/150K val). Its test set is not released, so Appendix C evaluates on
# the validation set, and "following Wukong" on its first 10,000 images and their 50,000 captions
# (max_images=10000); val and test loaders are that same subset.
_base_ = ['./jsonl_retrieval_224.py']

data_root = 'data/aic-icc'
train_dir = 'ai_challenger_caption_train_20170902'
val_dir = 'ai_challenger_caption_validation_20170910'
val_split = dict(type='AICICCDataset', data_root=data_root,
                 ann_file=f'{val_dir}/caption_validation_annotations_20170910.json',
                 data_prefix=dict(img_path=f'{val_dir}/caption_validation_images_20170910'),
                 max_images=10000)

train_dataloader = dict(dataset=dict(type='AICICCDataset', data_root=data_root,
                                     ann_file=f'{train_dir}/caption_train_annotations_20170902.json',
                                     data_prefix=dict(img_path=f'{train_dir}/caption_train_images_20170902')))
val_dataloader = dict(dataset=val_split)
test_dataloader = dict(dataset=val_split)
