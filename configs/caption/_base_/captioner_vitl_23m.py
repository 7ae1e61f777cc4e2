# Captioning from R2D2 ViT-L (23M): the pre-trained model's frozen CLIP ViT-L/14 image encoder, a
# projection of its 1024-wide tokens to 768, and a BERT-base decoder (causal self-attention +
# cross-attention, transformers' BertLMHeadModel) initialised from R2D2's text encoder as BLIP does
# (only the cross-attention and the LM head start afresh). The CCMB paper does not describe its
# captioning fine-tuning; everything below the model is our choice, after BLIP's captioning recipe:
# LM loss with label smoothing 0.1, AdamW lr 1e-5 (the new cross-attention and projection at 10x),
# weight decay 0.05, 5 epochs, cosine schedule; beam search with 3 beams, 5 to 30 tokens.
# The weights come from the Hub export of the converted official checkpoint (r2d2lib/r2d2_vitl_23m,
# see model_zoo/); point model.pretrained.source at a folder of your own (save_pretrained) or at
# r2d2lib/r2d2_vitl_250m with --cfg-options.
_base_ = ['../../_base_/default_runtime.py']

image_size = 224
model = dict(
    type='ImageCaptioner',
    data_preprocessor=dict(type='ImageTextDataPreprocessor', image_size=image_size,
                           tokenizer=dict(name_or_path='hfl/chinese-roberta-wwm-ext'), max_length=64),
    image_encoder=dict(
        type='HFCLIPVisionEncoder',
        config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                    image_size=image_size, patch_size=14),
        pretrained=None,  # the ViT's weights come with the R2D2 model (pretrained.source)
        frozen=True),
    image_proj=dict(type='ProjectionHead'),
    text_decoder=dict(type='HFBertDecoder'),  # BERT-base, chinese-roberta-wwm-ext's shape
    generation=dict(num_beams=3, max_length=30, min_length=5),
    pretrained=dict(source='r2d2lib/r2d2_vitl_23m', image_encoder=True, text_decoder=True),
    objective=dict(type='CaptionObjective', lm=dict(type='CaptionLMLoss', label_smoothing=0.1)),
)

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
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=False, interpolation='bicubic',
         backend='pillow'),
    dict(type='PackInputs', algorithm_keys=['text', 'image_idx', 'text_idx', 'captions'],
         meta_keys=['img_path', 'image_id']),
]
loader = dict(num_workers=8, persistent_workers=True, collate_fn=dict(type='default_collate'))
train_dataloader = dict(batch_size=32, sampler=dict(type='DefaultSampler', shuffle=True), **loader)
val_dataloader = dict(batch_size=32, sampler=dict(type='DefaultSampler', shuffle=False), **loader)
test_dataloader = val_dataloader
val_evaluator = dict(type='CaptionMetric', tokenization='jieba')
test_evaluator = val_evaluator

max_epochs = 5
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-5, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'.crossattention': dict(lr_mult=10.0), 'image_proj': dict(lr_mult=10.0)},
                       norm_decay_mult=0.0, bias_decay_mult=0.0),
)
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=0.0,
                        convert_to_iter_based=True)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(checkpoint=dict(save_best='caption/CIDEr-D', rule='greater'))
