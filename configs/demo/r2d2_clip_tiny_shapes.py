# Table 3 on the toy data, R2D2-CLIP: the demo's dual encoder with GCPR only (no cross encoders,
# no distillation, no MLM). Everything else (towers, data, schedule) as r2d2_tiny_shapes.py.
_base_ = ['./r2d2_tiny_shapes.py']

model = dict(
    _delete_=True,
    type='DualEncoderModel',
    data_preprocessor={{_base_.model.data_preprocessor}},
    image_encoder={{_base_.model.image_encoder}},
    text_encoder={{_base_.model.text_encoder}},
    embed_dim={{_base_.model.embed_dim}},
    objective=dict(type='ContrastiveObjective', contrastive=dict(type='GCPRLoss')),
)
val_cfg = dict(rerank=False)
test_cfg = dict(rerank=False)
