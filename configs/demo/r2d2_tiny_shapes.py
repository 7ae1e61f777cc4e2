# The embedded demo: a tiny R2D2 trained from scratch on the generated toy-shapes corpus
# (r2d2lib/datasets/toy_shapes.py) in minutes on 2 CPU cores. The full objective of Eq. 8 with
# the same components as the real model (GCPR with TgD, FGR, MLM with enhanced training, FgD),
# at width 64. Unlike the paper the ViT is trained (frozen=False): there are no pretrained CLIP
# weights offline, and a random frozen ViT sees too little. The queue holds 256 features
# (8 batches of the 2,000-pair corpus, as 65,536 is a small share of 23M pairs).
_base_ = ['../_base_/default_runtime.py']

data_root = 'data/toy_shapes'
image_size = 64
width = 64

model = dict(
    type='R2D2Model',
    data_preprocessor=dict(
        type='ImageTextDataPreprocessor',
        image_size=image_size,
        tokenizer=dict(vocab_file=data_root + '/vocab.txt'),
        max_length=32),  # the longest toy caption is 30 characters + [CLS] [SEP]
    image_encoder=dict(
        type='HFCLIPVisionEncoder',
        config=dict(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=2,
                    num_attention_heads=4, image_size=image_size, patch_size=8,
                    hidden_act='quick_gelu', layer_norm_eps=1e-5),
        frozen=False),
    text_encoder=dict(
        type='HFBertEncoder',
        config=dict(vocab_size=128, hidden_size=width, num_hidden_layers=2,
                    num_attention_heads=4, intermediate_size=4 * width,
                    max_position_embeddings=64, type_vocab_size=2)),
    text_image_encoder=dict(type='CrossEncoder', width=width, kv_width=width, num_layers=2,
                            num_heads=4, dropout=0.0),
    image_text_encoder=dict(type='CrossEncoder', width=width, kv_width=width, num_layers=2,
                            num_heads=4, dropout=0.0),
    embed_dim=width,
    temperature=dict(type='Temperature', init=0.07),
    objective=dict(
        type='R2D2Objective',
        contrastive=dict(type='TargetDistillLoss', alpha=0.4),
        fgr=dict(type='FGRLoss'),
        mlm_head=dict(type='MLMHead'),
        enhanced_training=True,
        teacher=dict(type='MomentumTeacher', momentum=0.995),
        queue=dict(type='FeatureQueue', size=256, decay=0.99),
        fgd=dict(type='FeatureGuidedDistiller', student_temp=0.1, teacher_temp=0.04),
        weights=dict(gcpr=1.0, fgr=1.0, fgd=1.0, mlm=1.0)),
)

pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=False,
         interpolation='bicubic', backend='pillow'),
    dict(type='PackInputs', algorithm_keys=['text', 'image_idx', 'text_idx'],
         meta_keys=['img_path', 'image_id']),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='RetrievalDataset', data_root=data_root, ann_file='train.jsonl',
                 pipeline=pipeline),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='RetrievalDataset', data_root=data_root, ann_file='test.jsonl',
                 pipeline=pipeline, test_mode=True),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='RetrievalMetric')
test_evaluator = val_evaluator

max_epochs = 8  # 1,000 iterations of 32 pairs
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.02),
    paramwise_cfg=dict(custom_keys={'.temp': dict(decay_mult=0.0)}, norm_decay_mult=0.0,
                       bias_decay_mult=0.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs, eta_min=1e-5,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=4)
val_cfg = dict(type='RetrievalValLoop', top_k=16)
test_cfg = dict(type='RetrievalTestLoop', top_k=16)

default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=max_epochs))
custom_hooks = [dict(type='RandomStateHook'), dict(type='MomentumUpdateHook'), dict(type='DataReportHook'),
                dict(type='ProgressBarHook')]
log_processor = dict(window_size=20)
