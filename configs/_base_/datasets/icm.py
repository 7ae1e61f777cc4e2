# ICM, the image-caption matching set of Zero (Sec. 2.2; Table A: 320K/320K train, 40K/40K val and
# test, half matched and half not): ICR's layout (icr.py) with a 0/1 "label" per pair,
# ICM/<split>/long_itm_<split>.json, read by MatchingDataset; the pipelines also pack the label.
# Appendix C reports AUC on the validation set (the test set is the leaderboard's).
_base_ = ['./icr.py']

task, ann_prefix = 'ICM', 'long_itm'
train_pipeline = [*_base_.train_pipeline[:-1],
                  dict(_base_.train_pipeline[-1], algorithm_keys=['text', 'image_idx', 'text_idx', 'label'])]
test_pipeline = [*_base_.test_pipeline[:-1],
                 dict(_base_.test_pipeline[-1], algorithm_keys=['text', 'image_idx', 'text_idx', 'label'])]
train_dataloader = dict(dataset=dict(type='MatchingDataset', ann_file=f'{task}/train/{ann_prefix}_train.json',
                                     pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(type='MatchingDataset', ann_file=f'{task}/val/{ann_prefix}_val.json',
                                   pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='MatchingMetric')
test_evaluator = val_evaluator
