"""Initialising the towers from public weights: an OpenAI CLIP ``CLIPModel`` folder for the image tower and a
BERT folder (hfl/chinese-roberta-wwm-ext's ``BertForMaskedLM`` layout) for the text tower.

tests/models/encoders checks that the weights are copied; here the outputs must equal transformers' own
models, through the encoders and through a DualEncoderModel built from a config naming both folders (as
configs/_base_/models/dual_encoder_vitb.py names the Hub ids), loaded by ``init_weights`` as the Runner does.
"""
import copy

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, CLIPConfig, CLIPModel

from r2d2lib.io import PretrainedLoadError
from r2d2lib.models.encoders import HFBertEncoder, HFCLIPVisionEncoder
from r2d2lib.registry import MODELS

torch.set_num_threads(1)

VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
              patch_size=8, image_size=32)
CLIP_TEXT = dict(hidden_size=24, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                 vocab_size=100, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1)
BERT = dict(vocab_size=64, hidden_size=40, num_hidden_layers=2, num_attention_heads=2, intermediate_size=80,
            max_position_embeddings=64)


def perturb(model: torch.nn.Module) -> torch.nn.Module:
    """Every weight moved off its initial value (LayerNorms are not identities, biases not zero)."""
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return model.eval()


@pytest.fixture(scope='module')
def clip_dir(tmp_path_factory):
    """A tiny OpenAI-style CLIPModel (both towers, projections, logit scale) saved by transformers."""
    torch.manual_seed(0)
    model = perturb(CLIPModel(CLIPConfig(vision_config={**VISION, 'hidden_act': 'quick_gelu'},
                                         text_config=CLIP_TEXT, projection_dim=16)))
    path = tmp_path_factory.mktemp('clip')
    model.save_pretrained(path)
    return path, model


@pytest.fixture(scope='module')
def bert_dir(tmp_path_factory):
    """A tiny chinese-roberta-wwm-ext-like checkpoint: BertForMaskedLM (``bert.*`` and ``cls.*`` keys)."""
    torch.manual_seed(1)
    model = perturb(BertForMaskedLM(BertConfig(**BERT, layer_norm_eps=1e-12, hidden_act='gelu')))
    path = tmp_path_factory.mktemp('bert')
    model.save_pretrained(path)
    return path, model.bert


def pixels() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))


def tokens() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1, BERT['vocab_size'], (3, 9), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    return ids * mask, mask


@torch.no_grad()
def test_image_tower_from_a_clip_model_folder_matches_its_vision_model(clip_dir):
    path, clip = clip_dir
    encoder = HFCLIPVisionEncoder(config=VISION, pretrained=str(path)).eval()
    encoder.init_weights()
    ref = clip.vision_model(pixel_values=pixels())
    torch.testing.assert_close(encoder(pixels()), ref.last_hidden_state, atol=1e-6, rtol=1e-6)
    # the CLIP feature (post_layernorm(CLS) @ visual_projection) with cls_post_layernorm
    encoder = HFCLIPVisionEncoder(config=VISION, pretrained=str(path), cls_post_layernorm=True).eval()
    encoder.init_weights()
    out = encoder(pixels())
    torch.testing.assert_close(out[:, 0], ref.pooler_output, atol=1e-6, rtol=1e-6)
    features = clip.get_image_features(pixel_values=pixels()).pooler_output
    torch.testing.assert_close(out[:, 0] @ clip.visual_projection.weight.t(), features, atol=1e-6, rtol=1e-6)


@torch.no_grad()
def test_text_tower_from_a_bert_folder_matches_bert_model(bert_dir):
    path, bert = bert_dir
    encoder = HFBertEncoder(config=BERT, pretrained=str(path)).eval()
    encoder.init_weights()
    ids, mask = tokens()
    ref = bert(input_ids=ids, attention_mask=mask).last_hidden_state
    keep = mask.bool()
    torch.testing.assert_close(encoder(ids, mask)[keep], ref[keep], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(encoder(ids, mask)[:, 0], ref[:, 0], atol=1e-6, rtol=1e-6)


def dual_encoder_config(clip_path, bert_path) -> dict:
    """R2D2's dual encoder (frozen CLIP ViT, BERT) at tiny size, with both towers from local folders."""
    return dict(
        type='DualEncoderModel',
        data_preprocessor=dict(type='ImageTextDataPreprocessor', image_size=32, max_length=16),
        image_encoder=dict(type='HFCLIPVisionEncoder', config=VISION, pretrained=str(clip_path), frozen=True),
        text_encoder=dict(type='HFBertEncoder', config=BERT, pretrained=str(bert_path)),
        embed_dim=16)


def test_dual_encoder_initialises_both_towers_from_public_folders(clip_dir, bert_dir):
    (clip_path, clip), (bert_path, bert) = clip_dir, bert_dir
    model = MODELS.build(dual_encoder_config(clip_path, bert_path))
    images, (ids, mask) = pixels(), tokens()
    with torch.no_grad():
        ref_image = clip.vision_model(pixel_values=images).last_hidden_state
        ref_text = bert(input_ids=ids, attention_mask=mask).last_hidden_state
        assert not torch.allclose(model.image_encoder(images), ref_image)  # nothing loaded at build
    model.init_weights()
    model.eval()
    with torch.no_grad():
        image_tokens, image_embeds = model.image_features(images)
        text_hidden, text_embeds = model.text_features(ids, mask)
    torch.testing.assert_close(image_tokens, ref_image, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(text_hidden[:, 0], ref_text[:, 0], atol=1e-6, rtol=1e-6)
    assert image_embeds.shape == (2, 16) and text_embeds.shape == (3, 16)
    assert model.image_encoder.frozen and not any(p.requires_grad for p in model.image_encoder.parameters())
    assert all(p.requires_grad for p in model.text_encoder.parameters())


def test_swapped_folders_are_refused_naming_the_source(clip_dir, bert_dir):
    (clip_path, _), (bert_path, _) = clip_dir, bert_dir
    cfg = copy.deepcopy(dual_encoder_config(clip_path, bert_path))
    cfg['text_encoder']['pretrained'] = str(clip_path)  # a CLIPModel folder is no BERT
    model = MODELS.build(cfg)
    with pytest.raises(PretrainedLoadError, match=str(clip_path)):
        model.init_weights()


@torch.no_grad()
def test_image_tower_from_a_transformers_4_clip_model_file(tmp_path, clip_dir):
    """openai/clip-vit-base-patch16's own files: a transformers 4.x CLIPModel ``pytorch_model.bin``
    with the ``position_ids`` buffers of both towers."""
    _, clip = clip_dir
    state = dict(clip.state_dict())
    state['vision_model.embeddings.position_ids'] = torch.arange(17)[None]
    state['text_model.embeddings.position_ids'] = torch.arange(16)[None]
    torch.save(state, tmp_path / 'pytorch_model.bin')
    clip.config.save_pretrained(tmp_path)
    encoder = HFCLIPVisionEncoder(config=VISION, pretrained=str(tmp_path), cls_post_layernorm=True).eval()
    encoder.init_weights()
    pooled = clip.vision_model(pixel_values=pixels()).pooler_output
    torch.testing.assert_close(encoder(pixels())[:, 0], pooled, atol=1e-6, rtol=1e-6)
