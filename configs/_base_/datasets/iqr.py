# IQR, the image-query retrieval set of Zero (Sec. 2.2): ICR's layout and protocol (icr.py) with search
# queries as texts, IQR/<split>/short_itr_<split>.json. Reported on the validation set (Appendix C).
_base_ = ['./icr.py']

task, ann_prefix = 'IQR', 'short_itr'
train_dataloader = dict(dataset=dict(ann_file=f'{task}/train/{ann_prefix}_train.json'))
val_dataloader = dict(dataset=dict(ann_file=f'{task}/val/{ann_prefix}_val.json'))
test_dataloader = val_dataloader
