# The dual encoder with CLIP ViT-L/14 (24 layers, width 1024, patch 14), frozen (Sec. 4.1).
_base_ = ['./dual_encoder_vitb.py']

model = dict(
    image_encoder=dict(
        config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                    num_attention_heads=16, image_size=224, patch_size=14),
        pretrained='openai/clip-vit-large-patch14'),
)
