"""PositionalTokenProjection: the 2-D sine-cosine grid it adds, LayerNorm and projection, bad shapes; a
captioner using it round-trips through save_pretrained bit-exactly; R2D2's fusion_positions puts it in
front of both cross encoders (and the MLM pass) and round-trips too."""
import copy
import math

import pytest
import torch
from mmengine.registry import init_default_scope

from r2d2lib import load_model
from r2d2lib.models.heads import PositionalTokenProjection, sincos_2d
from r2d2lib.registry import MODELS
from tests.models.captioners.test_captioner import TINY_CAPTIONER, pixels

torch.set_num_threads(1)
init_default_scope('r2d2lib')


def test_sincos_grid_is_row_major_columns_then_rows():
    grid = sincos_2d(2, 4)  # one frequency (1): [sin col, cos col, sin row, cos row]
    s1, c1 = math.sin(1.0), math.cos(1.0)
    expected = torch.tensor([[0, 1, 0, 1], [s1, c1, 0, 1], [0, 1, s1, c1], [s1, c1, s1, c1]])
    assert torch.allclose(grid, expected, atol=1e-7)
    assert sincos_2d(8, 64).shape == (64, 64)
    assert len({tuple(row.tolist()) for row in sincos_2d(8, 64)}) == 64  # every patch distinct
    with pytest.raises(ValueError, match='divisible by 4'):
        sincos_2d(2, 6)


def test_adds_positions_to_the_normalised_patch_tokens_and_none_to_cls():
    head = PositionalTokenProjection(8, 8, scale=0.5)
    assert isinstance(head.proj, torch.nn.Identity)
    tokens = torch.randn(2, 1 + 4, 8, generator=torch.Generator().manual_seed(0))
    out = head(tokens)
    normed = torch.nn.functional.layer_norm(tokens, (8,))
    assert torch.allclose(out[:, 0], normed[:, 0], atol=1e-6)
    assert torch.allclose(out[:, 1:] - normed[:, 1:], 0.5 * sincos_2d(2, 8).expand(2, 4, 8), atol=1e-6)
    projected = PositionalTokenProjection(8, 12)
    assert isinstance(projected.proj, torch.nn.Linear) and projected(tokens).shape == (2, 5, 12)


def test_refuses_a_non_square_grid_and_a_width_not_divisible_by_4():
    with pytest.raises(ValueError, match='square patch grid, got 6 tokens'):
        PositionalTokenProjection(8, 8)(torch.zeros(1, 6, 8))
    with pytest.raises(ValueError, match='out_features divisible by 4, got 10'):
        PositionalTokenProjection(8, 10)


def test_a_captioner_with_it_round_trips_bit_exactly(toy_data, tmp_path):
    cfg = copy.deepcopy(TINY_CAPTIONER)
    cfg['data_preprocessor']['tokenizer']['vocab_file'] = str(toy_data / 'vocab.txt')
    cfg['image_proj'] = dict(type='PositionalTokenProjection', scale=2.0)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    model.eval()
    assert isinstance(model.image_proj, PositionalTokenProjection)
    assert model.image_proj.proj.out_features == 32
    loaded = load_model(str(model.save_pretrained(tmp_path / 'captioner')))
    assert loaded.image_proj.scale == 2.0
    images = pixels(2, seed=1)
    assert torch.equal(loaded.image_tokens(images), model.image_tokens(images))
    assert torch.equal(loaded.generate_ids(images, num_beams=2), model.generate_ids(images, num_beams=2))


def test_r2d2_fusion_positions_feed_both_cross_encoders_and_round_trip(tiny_full_cfg, tmp_path):
    torch.manual_seed(0)
    plain = MODELS.build(copy.deepcopy(tiny_full_cfg)).eval()
    assert plain.fusion_positions is None
    cfg = copy.deepcopy(tiny_full_cfg)
    cfg['fusion_positions'] = dict(type='PositionalTokenProjection', scale=2.0)
    model = MODELS.build(cfg).eval()
    width = model.image_encoder.width
    assert isinstance(model.fusion_positions, PositionalTokenProjection)
    assert model.fusion_positions.out_features == width
    tokens = model.image_encoder(pixels(3))
    hidden, mask = torch.randn(3, 5, model.text_encoder.width), torch.ones(3, 5, dtype=torch.long)
    with torch.no_grad():
        text_image, image_text = model.cross_encode(tokens, hidden, mask)
        positioned = model.fusion_positions(tokens)
        assert not torch.allclose(positioned, tokens)
        torch.testing.assert_close(text_image, model.text_image_encoder(hidden, positioned, x_mask=mask))
        torch.testing.assert_close(image_text, model.image_text_encoder(
            model.image_fusion_proj(positioned), hidden, context_mask=mask))
    loaded = load_model(model.save_pretrained(tmp_path / 'r2d2'))
    assert isinstance(loaded.fusion_positions, PositionalTokenProjection)
    with torch.no_grad():
        assert torch.equal(loaded.match_features(tokens, hidden, mask),
                           model.match_features(tokens, hidden, mask))
