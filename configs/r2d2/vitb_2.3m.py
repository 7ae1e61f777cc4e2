# R2D2 ViT-B pre-trained on the 2.3M-pair Zero corpus subset with GCPR + FGR
# (the full objective of Eq. 8 arrives with MLM and two-way distillation).
# 224 px, 768-d, 12-layer text encoder, 6-layer cross encoders, batch 32 per GPU, 30 epochs.
_base_ = [
    '../_base_/models/r2d2_vitb.py',
    '../_base_/datasets/jsonl_retrieval_224.py',
    '../_base_/schedules/pretrain_30e.py',
    '../_base_/default_runtime.py',
]

data_root = 'data/zero_2.3m'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
default_hooks = dict(checkpoint=dict(save_best='retrieval/rerank_R@M', rule='greater'))
