# R2D2 ViT-B pre-trained on the 2.3M-pair subset of the Zero corpus,
# with the full objective of Eq. 8. 224 px, batch 32 per GPU, 30 epochs (Sec. 4.1).
_base_ = [
    '../_base_/models/r2d2_vitb.py',
    '../_base_/datasets/zero_corpus_224.py',
    '../_base_/schedules/pretrain_30e.py',
    '../_base_/default_runtime.py',
]

data_root = 'data/zero_2.3m'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
default_hooks = dict(checkpoint=dict(save_best='retrieval/rerank_R@M', rule='greater'))
