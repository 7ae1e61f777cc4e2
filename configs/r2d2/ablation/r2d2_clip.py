# Table 3, R2D2-CLIP: R2D2 ViT-L restricted to global contrastive pre-ranking, without the cross
# encoders and two-way distillation (Sec. 4.3): the dual encoder with GCPR only, 2.3M pairs.
_base_ = [
    '../../_base_/models/dual_encoder_vitl.py',
    '../../_base_/datasets/jsonl_retrieval_224.py',
    '../../_base_/schedules/pretrain_30e.py',
    '../../_base_/default_runtime.py',
]

data_root = 'data/zero_2.3m'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
# no cross encoders: rank by embeddings only
val_cfg = dict(rerank=False)
test_cfg = dict(rerank=False)
default_hooks = dict(checkpoint=dict(save_best='retrieval/R@M', rule='greater'))
