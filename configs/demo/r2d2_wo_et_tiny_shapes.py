# Table 3 on the toy data, R2D2 w/o ET: MLM in its own cross-encoder pass, FGR on complete texts.
_base_ = ['./r2d2_tiny_shapes.py']

model = dict(objective=dict(enhanced_training=False))
