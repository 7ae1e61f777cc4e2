# Chinese-CLIP ViT-B/16 (Yang et al., 2022; OFA-Sys/chinese-clip-vit-base-patch16) as a DualEncoderModel:
# a CLIP ViT-B/16 image tower and a RoBERTa-wwm-ext-base text tower, 512-d embeddings, CLIP's InfoNCE
# with a learnable logit scale. It is the model that tools/convert/chinese_clip.py imports the released
# weights into (docs/converters.md); the towers here start random (pretrained=None) because the
# Chinese-CLIP weights come from the converted folder, not from a transformers checkpoint of one tower.
#
# Two differences from R2D2's dual encoder make the import exact: the image feature is the CLS token
# after the ViT's final LayerNorm (cls_post_layernorm=True: Chinese-CLIP's ln_post(CLS) @ proj), and
# both projections have no bias. The text feature is the [CLS] hidden state, as in R2D2.
# The schedule follows Chinese-CLIP's MUGE fine-tuning script (lr 5e-5, weight decay 0.001, 100 warm-up
# steps, cosine, 3 epochs, 52 tokens).
_base_ = [
    '../_base_/datasets/jsonl_retrieval_224.py',
    '../_base_/schedules/pretrain_30e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    type='DualEncoderModel',
    data_preprocessor=dict(
        type='ImageTextDataPreprocessor',
        image_size=224,
        tokenizer=dict(name_or_path='OFA-Sys/chinese-clip-vit-base-patch16'),
        max_length=52),  # Chinese-CLIP's context length
    image_encoder=dict(
        type='HFCLIPVisionEncoder',
        config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                    num_attention_heads=12, image_size=224, patch_size=16,
                    hidden_act='quick_gelu', layer_norm_eps=1e-5),
        pretrained=None,
        cls_post_layernorm=True,
        frozen=False),
    text_encoder=dict(
        type='HFBertEncoder',
        config=dict(vocab_size=21128, hidden_size=768, num_hidden_layers=12,
                    num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512,
                    type_vocab_size=2, layer_norm_eps=1e-12, hidden_act='gelu'),
        pretrained=None),
    embed_dim=512,
    projection_head=dict(type='ProjectionHead', bias=False),  # visual.proj, text_projection
    # logit_scale of the checkpoint (exp(logit_scale) = 1 / tau, clamped at 100 as CLIP)
    temperature=dict(type='LogitScale', init=0.07, max_scale=100.0),
    objective=dict(type='ContrastiveObjective', contrastive=dict(type='InfoNCELoss')),
)

optim_wrapper = dict(
    optimizer=dict(lr=5e-5, weight_decay=0.001),
    paramwise_cfg=dict(custom_keys={'.logit_scale': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=3, eta_min=0.0,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=3, val_interval=1)
auto_scale_lr = dict(enable=False, base_batch_size=128 * 8)  # 8 GPUs x 128 in the MUGE script

data_root = 'data/muge'
train_dataloader = dict(batch_size=128, dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
val_cfg = dict(rerank=False)  # a dual encoder ranks by embeddings only
test_cfg = dict(rerank=False)
default_hooks = dict(checkpoint=dict(save_best='retrieval/R@M', rule='greater'))
