# Text-to-image on the toy-shapes corpus (make generate-demo; run make demo first, which writes
# work_dirs/demo/model). A pixel-space diffusion model at 32 px (the 64 px images resized): diffusers'
# UNet2DConditionModel, widths 16/32/64, cross-attention on the demo R2D2's frozen text encoder (width 64)
# at 16x16 and 8x8 and in the middle block; DDPM training with the cosine schedule (1,000 steps,
# v prediction: with epsilon prediction 300 iterations sampled pure noise, docs/text2image.md),
# condition dropout 0.1 to a learned unconditional embedding; DPM-Solver++ with 10 steps and guidance 3
# for evaluation. None of this is the CCMB paper's (it gives no generation recipe): the sizes are what
# trains in about 20-25 minutes on 2 CPU cores.
_base_ = ['../_base_/default_runtime.py']

data_root = 'data/toy_shapes'
demo_model = 'work_dirs/demo/model'
image_size = 32

model = dict(
    type='TextToImageDiffusion',
    data_preprocessor=dict(
        type='ImageTextDataPreprocessor',
        image_size=image_size,
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),  # pixels to [-1, 1]
        tokenizer=dict(vocab_file=data_root + '/vocab.txt'),
        max_length=32),
    text_encoder=dict(  # the demo R2D2's text encoder (configs/demo/r2d2_tiny_shapes.py), from pretrained
        type='HFBertEncoder',
        config=dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=256, max_position_embeddings=64, type_vocab_size=2),
        frozen=True),
    unet=dict(
        type='DiffusersUNet',
        config=dict(block_out_channels=[16, 32, 64], layers_per_block=1,
                    down_block_types=['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'],
                    up_block_types=['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'],
                    attention_head_dim=8, norm_num_groups=8)),
    vae=None,  # pixel space
    noise_schedule=dict(num_train_timesteps=1000, beta_schedule='squaredcos_cap_v2',
                        prediction_type='v_prediction'),
    unconditional='learned',
    sampling=dict(sampler='dpm-solver', steps=10, guidance=3.0, seed=0),
    pretrained=dict(source=demo_model),
    objective=dict(type='DiffusionObjective', condition_dropout=0.1),
)

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=False, interpolation='bicubic',
         backend='pillow'),
    dict(type='PackInputs', algorithm_keys=['text', 'image_idx', 'text_idx'], meta_keys=['img_path']),
]
test_pipeline = train_pipeline
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='RetrievalDataset', data_root=data_root, ann_file='train.jsonl',
                 pipeline=train_pipeline),
)
val_dataloader = dict(  # each test image once, with its first caption
    batch_size=50,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ImageCaptionsDataset', pipeline=test_pipeline, test_mode=True,
                 dataset=dict(type='RetrievalDataset', data_root=data_root, ann_file='test.jsonl')),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='Text2ImageMetric', evaluator=demo_model, rerank_k=16)
test_evaluator = val_evaluator

max_iters = 900  # 28,800 pairs, about 7 passes over the 4,000 training captions
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.0),
                     clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=30, end=max_iters, eta_min=1e-4),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=max_iters, by_epoch=False))
custom_hooks = [dict(type='RandomStateHook'), dict(type='DataReportHook'), dict(type='ProgressBarHook')]
log_processor = dict(by_epoch=False, window_size=50)
