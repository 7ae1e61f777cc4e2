# The demo with a timm ViT as the image encoder instead of transformers' CLIPVisionModel:
# the same width, depth and patch size, everything else inherited. Shows that encoders are
# interchangeable parts behind one output contract ([B, 1+N, C] tokens). Measured on 2 CPU cores,
# 8 epochs: R@M 26.5 (re-ranked 25.5), against 48.5 for the CLIPVisionModel demo at 8 epochs; the
# timm tower (final LayerNorm, timm initialisation) stays longer on the log(batch) plateau.
_base_ = ['./r2d2_tiny_shapes.py']

model = dict(
    image_encoder=dict(
        _delete_=True,
        type='TimmViTEncoder',
        model_name='vit_tiny_patch16_224',
        img_size=64, patch_size=8, embed_dim=64, depth=2, num_heads=4,
        frozen=False),
)
