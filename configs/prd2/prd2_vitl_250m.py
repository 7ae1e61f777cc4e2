# PRD2 ViT-L: the dual encoder of the official release (visual_encoder, text_encoder, vision_proj,
# text_proj, temp; no cross encoders), 250M pairs. The release gives its layout, not its recipe; this
# config trains it with the dual-encoder part of Eq. 8: GCPR with target-guided distillation and
# feature-guided distillation (momentum teacher, weighted queues), the values of Sec. 4.1.
_base_ = [
    '../_base_/models/dual_encoder_vitl.py',
    '../_base_/datasets/jsonl_retrieval_224.py',
    '../_base_/schedules/pretrain_30e.py',
    '../_base_/default_runtime.py',
]

model = dict(objective=dict(
    contrastive=dict(_delete_=True, type='TargetDistillLoss', alpha=0.4),
    teacher=dict(type='MomentumTeacher', momentum=0.995),
    queue=dict(type='FeatureQueue', size=65536, decay=0.99),
    fgd=dict(type='FeatureGuidedDistiller', student_temp=0.1, teacher_temp=0.04, centre_momentum=0.9,
             patch_drop_ratio=0.15),
    text_mask_ratio=0.15,
))

data_root = 'data/zero_250m'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
val_cfg = dict(rerank=False)  # a dual encoder ranks by embeddings only
test_cfg = dict(rerank=False)
default_hooks = dict(checkpoint=dict(save_best='retrieval/R@M', rule='greater'))
