# The dual-encoder half of R2D2 ViT-B (Sec. 3.1, 4.1): frozen CLIP ViT-B/16 image encoder,
# 12-layer BERT text encoder (randomly initialised, as the paper), 768-d embeddings, GCPR.
# R2D2 (r2d2_vitb.py) adds the cross encoders and the rest of Eq. 8; CLIP, BriVL and PRD2 swap
# the loss. Nothing is downloaded when the model is built: CLIP weights load in init_weights()
# (the Runner calls it when training starts), the tokenizer on first use.
model = dict(
    type='DualEncoderModel',
    data_preprocessor=dict(
        type='ImageTextDataPreprocessor',
        image_size=224,
        tokenizer=dict(name_or_path='hfl/chinese-roberta-wwm-ext'),
        max_length=64),
    image_encoder=dict(
        type='HFCLIPVisionEncoder',
        config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                    num_attention_heads=12, image_size=224, patch_size=16,
                    hidden_act='quick_gelu', layer_norm_eps=1e-5),
        pretrained='openai/clip-vit-base-patch16',
        frozen=True),
    text_encoder=dict(
        type='HFBertEncoder',
        config=dict(vocab_size=21128, hidden_size=768, num_hidden_layers=12,
                    num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512,
                    type_vocab_size=2, layer_norm_eps=1e-12, hidden_act='gelu')),
    embed_dim=768,
    projection_head=dict(type='ProjectionHead'),  # vision_proj, text_proj
    temperature=dict(type='Temperature', init=0.07, temperature_range=(0.001, 0.5)),  # tau of Eq. 1
    objective=dict(type='ContrastiveObjective', contrastive=dict(type='GCPRLoss')),
)
