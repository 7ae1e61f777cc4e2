# Table 3, R2D2 w/o ET: MLM runs its own text-image cross-encoder pass over the masked positives
# instead of riding the FGR pass; FGR sees the complete texts. Everything else as R2D2 ViT-L, 2.3M.
_base_ = ['../vitl_2.3m.py']

model = dict(objective=dict(enhanced_training=False))
