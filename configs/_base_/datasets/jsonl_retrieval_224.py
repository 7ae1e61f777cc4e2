# Image-text pairs in the official ICR/IQR JSON-lines format ({"image_path", "text"} per
# line), 224 px. Training: random resized crop + flip; evaluation: bicubic resize, as the
# official code. Point data_root / ann_file at your data (see docs/datasets.md).
data_root = 'data/zero'
image_size = 224

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', scale=image_size, crop_ratio_range=(0.5, 1.0),
         interpolation='bicubic', backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs', algorithm_keys=['text', 'image_idx', 'text_idx'],
         meta_keys=['img_path', 'image_id']),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=False,
         interpolation='bicubic', backend='pillow'),
    dict(type='PackInputs', algorithm_keys=['text', 'image_idx', 'text_idx'],
         meta_keys=['img_path', 'image_id']),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='RetrievalDataset', data_root=data_root, ann_file='train.jsonl',
                 pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='RetrievalDataset', data_root=data_root, ann_file='val.jsonl',
                 pipeline=test_pipeline, test_mode=True),
)
test_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='RetrievalDataset', data_root=data_root, ann_file='test.jsonl',
                 pipeline=test_pipeline, test_mode=True),
)
val_evaluator = dict(type='RetrievalMetric')
test_evaluator = val_evaluator
