"""Entity attention, box measures, heatmap overlay and result grid on hand-computed cases."""
import pytest
import torch
from PIL import Image

from r2d2lib.datasets.toy_shapes import build_toy_tokenizer
from r2d2lib.registry import MODELS
from r2d2lib.visualization import entity_attention, entity_token_positions, overlay_heatmap, result_grid
from r2d2lib.visualization.attention import check_layer, entity_grid, upsample_to
from r2d2lib.visualization.toy_check import box_mass, caption_naming, compare_boxes, object_phrase, summarise

TEXT = '左上角有一个红色的大圆形，右下角有一个蓝色的小三角形'


@pytest.fixture
def tokenizer(toy_data):
    return build_toy_tokenizer(toy_data / 'vocab.txt')


def test_entity_token_span(tokenizer):
    # one token per character, [CLS] first: 红 is character 6 -> token 7
    assert entity_token_positions(tokenizer, TEXT, '红色的大圆形', 40) == [7, 8, 9, 10, 11, 12]
    assert entity_token_positions(tokenizer, TEXT, '有一个', 40, occurrence=2) == [17, 18, 19]
    with pytest.raises(ValueError, match="entity '紫色' does not occur in the text '左上角"):
        entity_token_positions(tokenizer, TEXT, '紫色', 40)
    with pytest.raises(ValueError, match='does not occur 3 times'):
        entity_token_positions(tokenizer, TEXT, '有一个', 40, occurrence=3)
    with pytest.raises(ValueError, match='beyond the first 8 tokens'):
        entity_token_positions(tokenizer, TEXT, '三角形', 8)


def test_entity_grid_hand_computed():
    """heads 2, tokens 3, CLS + 4 patches; entity = token 1."""
    layer_map = torch.zeros(2, 3, 5)
    layer_map[0, 1] = torch.tensor([0.6, 0.1, 0.1, 0.1, 0.1])
    layer_map[1, 1] = torch.tensor([0.2, 0.4, 0.2, 0.1, 0.1])
    # head mean [0.4, 0.25, 0.15, 0.1, 0.1] -> patches / 0.6
    expected = torch.tensor([[5, 3], [2, 2]]) / 12
    assert torch.allclose(entity_grid(layer_map, [1], 1, (2, 2)), expected)
    layer_map[:, 2] = torch.tensor([0.0, 0.0, 0.0, 0.5, 0.5])  # token 2 only on the bottom row
    both = entity_grid(layer_map, [1, 2], 1, (2, 2))  # rows averaged before the prefix is dropped
    # patch rows [0.25, 0.15, 0.1, 0.1] and [0, 0, 0.5, 0.5] -> mean [0.125, 0.075, 0.3, 0.3] / 0.8
    assert torch.allclose(both, torch.tensor([[0.125, 0.075], [0.3, 0.3]]) / 0.8)


def test_upsampled_box_mass_hand_computed():
    pixels = upsample_to(torch.tensor([[0.5, 0.25], [0.25, 0.0]]), 4, 4)
    assert float(pixels.sum()) == pytest.approx(1.0)
    assert box_mass(pixels, [0, 0, 2, 2]) == pytest.approx(0.5)
    assert box_mass(pixels, [1, 1, 3, 3]) == pytest.approx(0.5 / 4 + 0.25 / 4 + 0.25 / 4)
    big = dict(color='红色', shape='圆形', size='大', bbox=[0, 0, 4, 2])  # mass 0.75 over 8 px
    small = dict(color='蓝色', shape='正方形', size='小', bbox=[3, 3, 4, 4])  # mass 0 over 1 px
    assert object_phrase(big) == '红色的大圆形'
    assert compare_boxes(pixels, big, small) == (True, True, True, pytest.approx(0.75), 0.0, True)
    lone = dict(small, bbox=[0, 0, 1, 1])  # mass 0.125 on 1 px vs 0.75 on 8 px: less mass, more density
    result = compare_boxes(pixels, lone, big)
    assert result[1:3] == (False, True)
    summary = summarise([compare_boxes(pixels, big, small), result], layer=1)
    assert summary['mass_win'] == 0.5 and summary['density_win'] == 1.0
    assert summary['red_circle_pairs'] == 1 and summary['red_circle_mass_win'] == 1.0
    assert summary['different_colour_pairs'] == 2 and summary['different_colour_mass_win'] == 0.5
    same = compare_boxes(pixels, dict(big, color='蓝色'), small)  # same colour: not counted there
    assert same[5] is False
    assert summarise([same, result], layer=1)['different_colour_pairs'] == 1


def test_caption_naming_finds_the_phrase():
    record = dict(image_path='images/test_000000.png',
                  captions=['左上角有一个大圆形，右下角有一个蓝色的小正方形',
                            '左上角有一个红色的大圆形，右下角有一个小正方形'])
    big = dict(color='红色', shape='圆形', size='大')
    assert caption_naming(record, big) == record['captions'][1]
    with pytest.raises(ValueError, match="images/test_000000.png: no caption names '绿色的大圆形'"):
        caption_naming(record, dict(big, color='绿色'))


@torch.no_grad()
def test_entity_attention_reads_the_cross_attention(tiny_model_cfg):
    torch.manual_seed(0)
    cfg = dict(tiny_model_cfg, text_image_encoder=dict(tiny_model_cfg['text_image_encoder'], num_layers=2))
    model = MODELS.build({**cfg, '_scope_': 'r2d2lib'}).eval()
    image = Image.new('RGB', (40, 30), (200, 30, 30))
    result = entity_attention(model, image, TEXT, '蓝色', layer=2)
    assert result.token_positions == [20, 21] and result.layer == 2 and result.grid.shape == (4, 4)
    tokens = model.tokenize([TEXT])
    maps = model.text_image_encoder.attention_maps(
        model.text_encoder(tokens['input_ids'], tokens['attention_mask']),
        model.image_encoder(model.preprocess([image])), x_mask=tokens['attention_mask'])
    rows = maps[1][0].mean(0)[[20, 21]].mean(0)[1:]
    assert torch.allclose(result.grid.flatten(), rows / rows.sum(), atol=1e-6)
    with pytest.raises(ValueError, match='has 2 layers, so layer 3 does not exist: choose a layer in 1..2'):
        check_layer(model, 3)


def test_overlay_and_grid_pictures():
    image = Image.new('RGB', (32, 16), (10, 20, 30))
    heat = torch.tensor([[0.0, 1.0]])
    plain = overlay_heatmap(image, heat, alpha=0.0)
    assert plain.size == (512, 256) and plain.getpixel((0, 0)) == (10, 20, 30)  # enlarged x16, untouched
    hot = overlay_heatmap(image, heat, alpha=1.0)
    assert hot.getpixel((511, 0)) == (128, 0, 0)  # jet(1.0): dark red
    assert hot.getpixel((0, 0)) == (0, 0, 128)  # jet(0.0): dark blue
    grid = result_grid([image, 'a text result'], ['1. 0.9', '2. 0.8'], columns=2, cell_size=64, query=image)
    assert grid.size == (2 * 70 + 6, 2 * (64 + 30 + 6) + 6)  # query + 2 results in 2 columns
    with pytest.raises(ValueError, match='2 cells but 1 labels'):
        result_grid([image, image], ['x'])
