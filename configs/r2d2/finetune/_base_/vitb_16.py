# The ViT-B/16 tower of R2D2 ViT-B (configs/_base_/models/dual_encoder_vitb.py) as changes to the ViT-L
# fine-tuning model: the ViT-B fine-tuning bases merge `vitb_16` into their model.
vitb_16 = dict(
    image_encoder=dict(config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                   num_attention_heads=12, image_size=224, patch_size=16)),
    text_image_encoder=dict(kv_width=768),  # keys/values: the ViT's tokens
)
