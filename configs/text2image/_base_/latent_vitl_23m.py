# Latent text-to-image diffusion conditioned on R2D2 ViT-L (23M)'s text encoder (a frozen BERT-base,
# chinese-roberta-wwm-ext's shape): 256 px images through Stable Diffusion's KL autoencoder
# (stabilityai/sd-vae-ft-mse, frozen, fetched when training starts like the CLIP weights; latents
# 4 x 32 x 32, scaling 0.18215) and a UNet of widths 192/384/768 with cross-attention at 16x16 and 8x8.
# The CCMB paper evaluates R2D2 on text-to-image generation but gives no generator recipe: everything here
# is our choice, after latent diffusion (Rombach et al. 2022): DDPM with the scaled-linear schedule
# (1,000 steps, epsilon prediction), condition dropout 0.1 to a learned unconditional embedding, AdamW
# 1e-4, 100k iterations of 64 pairs; DPM-Solver++ with 25 steps and guidance 3 for evaluation.
_base_ = ['../../_base_/default_runtime.py']

image_size = 256
r2d2 = 'r2d2lib/r2d2_vitl_23m'  # any r2d2lib model with a BERT-base text encoder (a folder of your own too)
model = dict(
    type='TextToImageDiffusion',
    data_preprocessor=dict(type='ImageTextDataPreprocessor', image_size=image_size, mean=(0.5, 0.5, 0.5),
                           std=(0.5, 0.5, 0.5), tokenizer=dict(name_or_path='hfl/chinese-roberta-wwm-ext'),
                           max_length=64),
    text_encoder=dict(type='HFBertEncoder', frozen=True),  # weights from pretrained.source
    vae=dict(
        type='DiffusersAutoencoder',
        config=dict(block_out_channels=[128, 256, 512, 512], latent_channels=4, sample_size=256,
                    down_block_types=['DownEncoderBlock2D'] * 4, up_block_types=['UpDecoderBlock2D'] * 4,
                    layers_per_block=2, scaling_factor=0.18215),
        pretrained='stabilityai/sd-vae-ft-mse',
        frozen=True),
    unet=dict(
        type='DiffusersUNet',
        config=dict(block_out_channels=[192, 384, 768], layers_per_block=2,
                    down_block_types=['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'],
                    up_block_types=['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'],
                    attention_head_dim=64, norm_num_groups=32),
        gradient_checkpointing=False),
    noise_schedule=dict(num_train_timesteps=1000, beta_schedule='scaled_linear', beta_start=0.00085,
                        beta_end=0.012, prediction_type='epsilon'),
    unconditional='learned',
    sampling=dict(sampler='dpm-solver', steps=25, guidance=3.0, seed=0),
    pretrained=dict(source=r2d2),
    objective=dict(type='DiffusionObjective', condition_dropout=0.1),
)

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', scale=image_size, crop_ratio_range=(0.8, 1.0), interpolation='bicubic',
         backend='pillow'),
    dict(type='PackInputs', algorithm_keys=['text', 'image_idx', 'text_idx'], meta_keys=['img_path']),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=False, interpolation='bicubic',
         backend='pillow'),
    dict(type='PackInputs', algorithm_keys=['text', 'image_idx', 'text_idx'], meta_keys=['img_path']),
]
loader = dict(num_workers=8, persistent_workers=True, collate_fn=dict(type='default_collate'))
train_dataloader = dict(batch_size=64, sampler=dict(type='InfiniteSampler', shuffle=True), **loader)
val_dataloader = dict(batch_size=32, sampler=dict(type='DefaultSampler', shuffle=False), **loader)
test_dataloader = val_dataloader
val_evaluator = dict(type='Text2ImageMetric', evaluator=r2d2, rerank_k=16)
test_evaluator = val_evaluator

max_iters = 100000
optim_wrapper = dict(type='MixedPrecisionOptimWrapper', dtype='bfloat16',
                     optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.01), clip_grad=dict(max_norm=1.0))
param_scheduler = [dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=10000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(logger=dict(interval=100),
                     checkpoint=dict(interval=10000, by_epoch=False, save_best='text2image/R-precision',
                                     rule='greater'))
log_processor = dict(by_epoch=False)
