# CLIP (Radford et al., 2021) on R2D2's towers: a plain dual encoder trained with the symmetric
# in-batch InfoNCE loss (one-hot targets over the batch of all GPUs, learnable logit scale clamped at
# 100). Frozen CLIP ViT-B/16 image encoder and BERT text encoder, as R2D2 ViT-B, 2.3M pairs.
_base_ = [
    '../_base_/models/dual_encoder_vitb.py',
    '../_base_/datasets/jsonl_retrieval_224.py',
    '../_base_/schedules/pretrain_30e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    temperature=dict(_delete_=True, type='LogitScale', init=0.07, max_scale=100.0),
    objective=dict(contrastive=dict(_delete_=True, type='InfoNCELoss')),
)
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'.logit_scale': dict(decay_mult=0.0)}))

data_root = 'data/zero_2.3m'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
val_cfg = dict(rerank=False)  # a dual encoder ranks by embeddings only
test_cfg = dict(rerank=False)
default_hooks = dict(checkpoint=dict(save_best='retrieval/R@M', rule='greater'))
