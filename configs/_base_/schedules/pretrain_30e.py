# Pre-training schedule (Sec. 4.1): Adam(W), cosine decay with a linear warm-up, 30 epochs.
# The paper does not give the learning rate or weight decay; these follow ALBEF, which
# R2D2's training recipe builds on.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.02),
    paramwise_cfg=dict(custom_keys={'.temp': dict(decay_mult=0.0)}, norm_decay_mult=0.0,
                       bias_decay_mult=0.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=30, eta_min=1e-6,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=30, val_interval=1)
val_cfg = dict(type='RetrievalValLoop', top_k=128)
test_cfg = dict(type='RetrievalTestLoop', top_k=128)
# The learning rate above is for 64 GPUs x 32 (the paper's 23M run); tools/train.py --auto-scale-lr
# scales it linearly to your total batch size.
auto_scale_lr = dict(enable=False, base_batch_size=32 * 64)
