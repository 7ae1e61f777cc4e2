# R2D2 ViT-B (Sec. 4.1): frozen CLIP ViT-B/16 image encoder, 12-layer BERT text encoder
# (randomly initialised, as the paper), two 6-layer cross encoders, 768-d embeddings.
# Nothing is downloaded when the model is built: CLIP weights load in init_weights()
# (the Runner calls it when training starts), the tokenizer on first use.
vision_width = 768
text_width = 768

model = dict(
    type='R2D2Model',
    data_preprocessor=dict(
        type='ImageTextDataPreprocessor',
        image_size=224,
        tokenizer=dict(name_or_path='hfl/chinese-roberta-wwm-ext'),
        max_length=64),
    image_encoder=dict(
        type='HFCLIPVisionEncoder',
        config=dict(hidden_size=vision_width, intermediate_size=3072, num_hidden_layers=12,
                    num_attention_heads=12, image_size=224, patch_size=16,
                    hidden_act='quick_gelu', layer_norm_eps=1e-5),
        pretrained='openai/clip-vit-base-patch16',
        frozen=True),
    text_encoder=dict(
        type='HFBertEncoder',
        config=dict(vocab_size=21128, hidden_size=text_width, num_hidden_layers=12,
                    num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512,
                    type_vocab_size=2, layer_norm_eps=1e-12, hidden_act='gelu')),
    text_image_encoder=dict(
        type='CrossEncoder', width=text_width, kv_width=vision_width, num_layers=6,
        num_heads=12, dropout=0.1),
    image_text_encoder=dict(
        type='CrossEncoder', width=text_width, kv_width=text_width, num_layers=6,
        num_heads=12, dropout=0.1),
    embed_dim=768,
    projection_head=dict(type='ProjectionHead'),  # vision_proj, text_proj, image_fusion_proj
    itm_head=dict(type='ITMHead'),  # one on each cross encoder's first token
    contrastive_loss=dict(type='GCPRLoss', temperature=0.07, temperature_range=(0.001, 0.5)),
    fgr_loss=dict(type='FGRLoss', class_weight=(1.0, 2.0)),
)
