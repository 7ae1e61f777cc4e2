# The attention demo (docs/inference.md, "4. Entity attention"): the tiny R2D2 of
# r2d2_tiny_shapes.py on the toy corpus with one caption per shape (caption_style='objects',
# e.g. 有一个红色的大圆形), trained for 2,000 iterations. Captions that name both shapes let MLM and
# FGR solve the toy without looking at the named shape; one caption per shape does not.
# Its 24 distinct captions recur across images, so the hardest in-batch negatives are mostly false
# ones (another image that has the named shape): drawn from softmax(sim / tau) at the learned tau
# (~0.01) FGR stays at chance. Here they are drawn at a fixed temperature of 1.0, nearly uniformly.
_base_ = ['./r2d2_tiny_shapes.py']

data_root = 'data/toy_shapes_objects'
max_epochs = 16  # 2,000 iterations of 32 pairs

model = dict(
    data_preprocessor=dict(tokenizer=dict(vocab_file=data_root + '/vocab.txt')),
    objective=dict(fgr=dict(hard_negative_temperature=1.0)))
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs, eta_min=1e-5,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(checkpoint=dict(interval=max_epochs))
