# BriVL / WenLan (Huo et al., 2021; ../shared/papers/002): cross-modal MoCo. Each image is
# contrasted with the momentum text encoder's key of its own text against a large queue of earlier
# text keys (and vice versa); no cross encoders. The abstract gives no hyper-parameters: momentum
# 0.999, temperature 0.07 and a 16,384-slot unweighted queue (decay 1.0) are MoCo's defaults.
# BriVL's own towers (EfficientNet + RoBERTa) are replaced by R2D2 ViT-B's, so results compare.
_base_ = [
    '../_base_/models/dual_encoder_vitb.py',
    '../_base_/datasets/jsonl_retrieval_224.py',
    '../_base_/schedules/pretrain_30e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    temperature=dict(_delete_=True, type='Temperature', init=0.07, learnable=False),  # MoCo's fixed tau
    objective=dict(
        contrastive=dict(_delete_=True, type='MoCoLoss'),
        teacher=dict(type='MomentumTeacher', momentum=0.999),
        queue=dict(type='FeatureQueue', size=16384, decay=1.0)),
)

data_root = 'data/zero_2.3m'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
val_cfg = dict(rerank=False)  # a dual encoder ranks by embeddings only
test_cfg = dict(rerank=False)
default_hooks = dict(checkpoint=dict(save_best='retrieval/R@M', rule='greater'))
