# ICR, the image-caption retrieval set of Zero (Sec. 2.2; Table A: 160K/160K train, 20K/20K val and
# test), as released beside IQR, ICM and IQM: <TASK>/<split>/<prefix>_<split>.json (JSON lines of
# image_path and text) and one shared image folder; the official code keeps only the file name of
# image_path (strip_image_dirs). Appendix C reports the validation set (the test set is the
# leaderboard's), so val and test loaders read val; evaluate the test split with
# --cfg-options test_dataloader.dataset.ann_file=ICR/test/long_itr_test.json
_base_ = ['./jsonl_retrieval_224.py']

data_root = 'data/zero-downstream'
task, ann_prefix = 'ICR', 'long_itr'
image_prefix = dict(img_path='IQR_IQM_ICR_ICM_images')
train_dataloader = dict(dataset=dict(data_root=data_root, ann_file=f'{task}/train/{ann_prefix}_train.json',
                                     data_prefix=image_prefix, strip_image_dirs=True))
val_dataloader = dict(dataset=dict(data_root=data_root, ann_file=f'{task}/val/{ann_prefix}_val.json',
                                   data_prefix=image_prefix, strip_image_dirs=True))
test_dataloader = val_dataloader
