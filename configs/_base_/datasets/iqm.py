# IQM, the image-query matching set of Zero (Sec. 2.2): ICM's layout and protocol (icm.py) with search
# queries as texts, IQM/<split>/short_itm_<split>.json. AUC on the validation set (Appendix C).
_base_ = ['./icm.py']

task, ann_prefix = 'IQM', 'short_itm'
train_dataloader = dict(dataset=dict(ann_file=f'{task}/train/{ann_prefix}_train.json'))
val_dataloader = dict(dataset=dict(ann_file=f'{task}/val/{ann_prefix}_val.json'))
test_dataloader = val_dataloader
