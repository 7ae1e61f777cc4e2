# Fine-tuning schedule (Sec. 4.1, Appendix C): Adam(W), cosine decay after a linear warm-up, 10 epochs,
# validation after every epoch. The paper gives neither the learning rate nor the weight decay nor the
# number of GPUs; these are ALBEF's retrieval fine-tuning settings (lr 1e-5 for 8 GPUs x 32, weight
# decay 0.02, one warm-up epoch, cosine to 1e-6), which R2D2's recipe builds on.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-5, betas=(0.9, 0.999), weight_decay=0.02),
    paramwise_cfg=dict(custom_keys={'.temp': dict(decay_mult=0.0)}, norm_decay_mult=0.0,
                       bias_decay_mult=0.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=10, eta_min=1e-6,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=10, val_interval=1)
# batch 32 per GPU (Sec. 4.1); tools/train.py --auto-scale-lr scales lr to your total batch size
auto_scale_lr = dict(enable=False, base_batch_size=32 * 8)
