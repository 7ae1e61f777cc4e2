# R2D2 ViT-L: the full objective of r2d2_vitb.py with CLIP ViT-L/14 (width 1024) as the frozen
# image encoder; the text-image cross encoder attends to 1024-wide image tokens.
_base_ = ['./r2d2_vitb.py']

model = dict(
    image_encoder=dict(
        config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                    num_attention_heads=16, image_size=224, patch_size=14),
        pretrained='openai/clip-vit-large-patch14'),
    text_image_encoder=dict(kv_width=1024),
)
