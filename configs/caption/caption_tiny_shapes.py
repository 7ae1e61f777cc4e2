# Captioning on the toy-shapes corpus from the demo model's image encoder (make caption-demo; run
# make demo first, which writes work_dirs/demo/model). The image encoder is the demo R2D2's, frozen;
# the decoder (BLIP-style) starts from the demo's text encoder and learns cross-attention over the
# image tokens with the LM loss (label smoothing 0.1). The image tokens get a LayerNorm and a fixed 2-D
# sine-cosine position encoding (PositionalTokenProjection): without it the decoder cannot tell where a
# patch is and misplaces the shapes (docs/captioning.md, "The toy demo"). Evaluation: CaptionMetric
# (jieba words) on the 200 test images, each with its 2 captions, beam search with 3 beams.
_base_ = ['../_base_/default_runtime.py']

data_root = 'data/toy_shapes'
demo_model = 'work_dirs/demo/model'
image_size = 64
width = 64

model = dict(
    type='ImageCaptioner',
    data_preprocessor=dict(
        type='ImageTextDataPreprocessor',
        image_size=image_size,
        tokenizer=dict(vocab_file=data_root + '/vocab.txt'),
        max_length=32),
    image_encoder=dict(
        type='HFCLIPVisionEncoder',
        config=dict(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=2,
                    num_attention_heads=4, image_size=image_size, patch_size=8,
                    hidden_act='quick_gelu', layer_norm_eps=1e-5),
        frozen=True),
    # LayerNorm + 2-D sin-cos positions; no linear map (the demo's tokens are as wide as the decoder)
    image_proj=dict(type='PositionalTokenProjection', scale=2.0),
    text_decoder=dict(
        type='HFBertDecoder',
        config=dict(vocab_size=128, hidden_size=width, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=4 * width, max_position_embeddings=64, type_vocab_size=2)),
    generation=dict(num_beams=3, max_length=32),
    pretrained=dict(source=demo_model, image_encoder=True, text_decoder=True),
    objective=dict(type='CaptionObjective', lm=dict(type='CaptionLMLoss', label_smoothing=0.1)),
)

pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=False,
         interpolation='bicubic', backend='pillow'),
    dict(type='PackInputs', algorithm_keys=['text', 'image_idx', 'text_idx', 'captions'],
         meta_keys=['img_path', 'image_id']),
]
train_pipeline = [*pipeline[:2], dict(type='PackInputs', algorithm_keys=['text', 'image_idx', 'text_idx'],
                                      meta_keys=['img_path', 'image_id'])]
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='RetrievalDataset', data_root=data_root, ann_file='train.jsonl',
                 pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=50,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ImageCaptionsDataset', pipeline=pipeline, test_mode=True,
                 dataset=dict(type='RetrievalDataset', data_root=data_root, ann_file='test.jsonl')),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='CaptionMetric', tokenization='jieba')
test_evaluator = val_evaluator

max_epochs = 12  # 1,500 iterations of 32 pairs
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.02),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
param_scheduler = [  # a 150-iteration warm-up inside the cosine (any --epochs >= 1 works)
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=150),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=1e-5,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=max_epochs))
log_processor = dict(window_size=20)
