"""Importing Chinese-CLIP into a DualEncoderModel: transformers' ChineseCLIPModel and the original format.

A tiny random transformers ``ChineseCLIPModel`` is the reference: its state dict converts into our
tiny DualEncoderModel, which must give transformers' ``get_image_features`` / ``get_text_features``
(L2-normalised). The original Chinese-CLIP format is produced from the same weights by the inverse
mapping written here (q/k/v fused into ``in_proj``, projections transposed, ``visual.*`` / ``bert.*``
names, ``{'state_dict': ...}`` with ``module.`` prefixes); a forward of that layout written from
``cn_clip/clip/model.py`` (``nn.MultiheadAttention`` blocks, ``ln_post(x[:, 0]) @ proj``) checks the
inverse mapping itself, and the original-format import must give the same features.
"""
import copy
import importlib.util
import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import BertConfig, BertModel, ChineseCLIPConfig, ChineseCLIPModel, CLIPConfig, CLIPModel

from r2d2lib.converters import convert_chinese_clip, model_config_from_hf
from r2d2lib.converters.building import expected_shapes
from r2d2lib.converters.chinese_clip import (
    DEFAULT_CONFIG,
    build_chinese_clip_model,
    detect_format,
    inference_model_config,
)
from r2d2lib.io import PretrainedLoadError
from r2d2lib.models.data_preprocessors.image_text import build_tokenizer
from r2d2lib.models.encoders import HFCLIPVisionEncoder
from r2d2lib.models.vlp import DualEncoderModel
from r2d2lib.registry import MODELS

torch.set_num_threads(1)

ROOT = Path(__file__).parents[2]
TOOL = ROOT / 'tools' / 'convert' / 'chinese_clip.py'

VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
              patch_size=8, image_size=32)
TEXT = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=64)
EMBED = 16  # != the tower widths: a projection that is not transposed has the wrong shape
LOGIT_SCALE = 4.2  # not CLIP's initial value, so the temperature mapping is checked
VOCAB_TOKENS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
VOCAB_TOKENS += list('一个红色的圆蓝方块在左上绿三角形和小黄星大')
VOCAB_TOKENS += [f'[unused{i}]' for i in range(TEXT['vocab_size'] - len(VOCAB_TOKENS))]


def tiny_hf_config() -> ChineseCLIPConfig:
    return ChineseCLIPConfig(vision_config=VISION, text_config=TEXT, projection_dim=EMBED)


@pytest.fixture(scope='module')
def hf_model() -> ChineseCLIPModel:
    """A tiny ChineseCLIPModel with every weight perturbed (LayerNorms are not identities)."""
    torch.manual_seed(0)
    model = ChineseCLIPModel(tiny_hf_config()).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
        model.logit_scale.fill_(LOGIT_SCALE)
    return model


@pytest.fixture(scope='module')
def vocab_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp('vocab') / 'vocab.txt'
    path.write_text('\n'.join(VOCAB_TOKENS) + '\n', encoding='utf-8')
    return str(path)


def our_config(**changes) -> dict:
    cfg = model_config_from_hf(tiny_hf_config())
    cfg.update(changes)
    return cfg


def pixels() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def tokens() -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [3, 12] with padding on two rows (pad id 0 where the mask is 0)."""
    ids = torch.randint(5, TEXT['vocab_size'], (3, 12), generator=torch.Generator().manual_seed(2))
    ids[:, 0] = 2  # [CLS]
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    return ids * mask, mask


@torch.no_grad()
def reference_features(hf_model: ChineseCLIPModel) -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask = tokens()
    image = hf_model.get_image_features(pixel_values=pixels()).pooler_output
    text = hf_model.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
    return F.normalize(image, dim=-1), F.normalize(text, dim=-1)


@torch.no_grad()
def our_features(model: DualEncoderModel) -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask = tokens()
    return model.encode_image(pixels()), model.encode_text(ids, mask)


def assert_same_features(ours: tuple, ref: tuple) -> None:
    for a, b in zip(ours, ref):
        assert a.shape == b.shape == (3, EMBED)
        assert bool((F.cosine_similarity(a, b, dim=-1) > 0.9999).all())
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------- the original layout, from the HF one
def hf_to_original(hf_state: dict) -> dict:
    """transformers ChineseCLIPModel names -> the original cn_clip names (the converter's inverse)."""
    parts = {'layer_norm1': 'ln_1', 'layer_norm2': 'ln_2', 'mlp.fc1': 'mlp.c_fc', 'mlp.fc2': 'mlp.c_proj',
             'self_attn.out_proj': 'attn.out_proj'}
    vision = {'embeddings.patch_embedding.weight': 'conv1.weight',
              'embeddings.class_embedding': 'class_embedding',
              'embeddings.position_embedding.weight': 'positional_embedding',
              'pre_layrnorm.weight': 'ln_pre.weight', 'pre_layrnorm.bias': 'ln_pre.bias',
              'post_layernorm.weight': 'ln_post.weight', 'post_layernorm.bias': 'ln_post.bias'}
    out = {}
    for name, tensor in hf_state.items():
        if name.startswith('text_model.'):
            out['bert.' + name[len('text_model.'):]] = tensor
        elif name == 'visual_projection.weight':
            out['visual.proj'] = tensor.t().contiguous()
        elif name == 'text_projection.weight':
            out['text_projection'] = tensor.t().contiguous()
        elif name == 'logit_scale':
            out[name] = tensor
        elif name.startswith('vision_model.encoder.layers.'):
            index, rest = re.fullmatch(r'vision_model\.encoder\.layers\.(\d+)\.(.+)', name).groups()
            prefix = f'visual.transformer.resblocks.{index}.'
            if re.fullmatch(r'self_attn\.[qkv]_proj\.(weight|bias)', rest):
                kind = rest.rsplit('.', 1)[1]
                layer = f'vision_model.encoder.layers.{index}.self_attn'
                qkv = [hf_state[f'{layer}.{p}_proj.{kind}'] for p in 'qkv']
                out[f'{prefix}attn.in_proj_{kind}'] = torch.cat(qkv, dim=0)
            else:
                module, leaf = rest.rsplit('.', 1)
                out[f'{prefix}{parts[module]}.{leaf}'] = tensor
        else:
            out['visual.' + vision[name[len('vision_model.'):]]] = tensor
    return out


def original_checkpoint(hf_model: ChineseCLIPModel) -> dict:
    """What Chinese-CLIP's training script saves: a dict whose ``state_dict`` has DDP's prefixes."""
    state = hf_to_original(hf_model.state_dict())
    return {'epoch': 3, 'step': 1000, 'name': 'tiny',
            'state_dict': {f'module.{k}': v for k, v in state.items()}}


@torch.no_grad()
def original_image_features(sd: dict, images: torch.Tensor, heads: int) -> torch.Tensor:
    """cn_clip's VisualTransformer.forward, with nn.MultiheadAttention blocks (sequence-first)."""
    def ln(x, name):
        return F.layer_norm(x, x.shape[-1:], sd[f'{name}.weight'], sd[f'{name}.bias'], 1e-5)

    x = F.conv2d(images, sd['visual.conv1.weight'], stride=VISION['patch_size'])
    x = x.flatten(2).permute(0, 2, 1)
    cls = sd['visual.class_embedding'] + torch.zeros(x.shape[0], 1, x.shape[-1])
    x = torch.cat([cls, x], dim=1) + sd['visual.positional_embedding']
    x = ln(x, 'visual.ln_pre').permute(1, 0, 2)  # NLD -> LND
    width = x.shape[-1]
    for i in range(VISION['num_hidden_layers']):
        p = f'visual.transformer.resblocks.{i}'
        attn = nn.MultiheadAttention(width, heads)
        attn.load_state_dict({k[len(f'{p}.attn.'):]: v for k, v in sd.items() if k.startswith(f'{p}.attn.')})
        h = ln(x, f'{p}.ln_1')
        x = x + attn(h, h, h, need_weights=False)[0]
        h = F.linear(ln(x, f'{p}.ln_2'), sd[f'{p}.mlp.c_fc.weight'], sd[f'{p}.mlp.c_fc.bias'])
        h = h * torch.sigmoid(1.702 * h)  # QuickGELU
        x = x + F.linear(h, sd[f'{p}.mlp.c_proj.weight'], sd[f'{p}.mlp.c_proj.bias'])
    x = x.permute(1, 0, 2)
    return ln(x[:, 0, :], 'visual.ln_post') @ sd['visual.proj']


@torch.no_grad()
def original_text_features(sd: dict, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """cn_clip's CLIP.encode_text: the BERT's [CLS] state @ text_projection."""
    bert = BertModel(BertConfig(**TEXT, layer_norm_eps=1e-12), add_pooling_layer=False).eval()
    bert.load_state_dict({k[len('bert.'):]: v for k, v in sd.items() if k.startswith('bert.')})
    return bert(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0] @ sd['text_projection']


def test_inverse_mapping_gives_the_original_model(hf_model):
    """The test's original-format state dict really is Chinese-CLIP's model (so the import test means it)."""
    sd = hf_to_original(hf_model.state_dict())
    ids, mask = tokens()
    original = (F.normalize(original_image_features(sd, pixels(), VISION['num_attention_heads']), dim=-1),
                F.normalize(original_text_features(sd, ids, mask), dim=-1))
    assert_same_features(original, reference_features(hf_model))


# ----------------------------------------------------------------- the import
def test_hf_state_dict_imports_exactly(hf_model):
    converted, dropped = convert_chinese_clip(hf_model.state_dict(), 'hf', our_config())
    assert dropped == []
    model = MODELS.build(our_config()).eval()
    model.load_state_dict(converted, strict=True)
    assert set(converted) == set(model.state_dict())
    assert_same_features(our_features(model), reference_features(hf_model))
    assert float(model.temperature.logit_scale.detach()) == pytest.approx(LOGIT_SCALE)
    assert float(model.temperature.tau.detach()) == pytest.approx(math.exp(-LOGIT_SCALE))
    # the towers are the transformers modules with their names
    hf_sd = hf_model.state_dict()
    assert torch.equal(converted['image_encoder.model.post_layernorm.weight'],
                       hf_sd['vision_model.post_layernorm.weight'])
    assert torch.equal(converted['vision_proj.weight'], hf_sd['visual_projection.weight'])
    assert model.vision_proj.bias is None and model.text_proj.bias is None


def test_original_checkpoint_imports_exactly(hf_model):
    checkpoint = original_checkpoint(hf_model)
    reference, _ = convert_chinese_clip(hf_model.state_dict(), 'hf', our_config())
    for source_format in ('original', 'auto'):
        converted, dropped = convert_chinese_clip(checkpoint, source_format, our_config())
        assert dropped == []
        assert set(converted) == set(reference)
        for name, tensor in converted.items():
            assert torch.equal(tensor, reference[name]), name
    model = build_chinese_clip_model(checkpoint, config=our_config())
    assert not model.training
    assert_same_features(our_features(model), reference_features(hf_model))
    assert model.model_config['temperature']['init'] == pytest.approx(math.exp(-LOGIT_SCALE), rel=1e-5)


def test_detect_format(hf_model):
    assert detect_format(hf_model.state_dict()) == 'hf'
    assert detect_format(hf_to_original(hf_model.state_dict())) == 'original'
    with pytest.raises(ValueError, match='not a Chinese-CLIP state dict'):
        detect_format({'encoder.weight': torch.zeros(1)})
    with pytest.raises(ValueError, match='source_format'):
        convert_chinese_clip(hf_model.state_dict(), 'openai', our_config())


def test_unused_tensors_are_dropped_by_name(hf_model):
    """The pooler and the index buffers of older transformers files; the original BERT pooler."""
    extra = {'text_model.pooler.dense.weight': torch.zeros(32, 32),
             'text_model.pooler.dense.bias': torch.zeros(32),
             'text_model.embeddings.position_ids': torch.arange(64)[None],
             'text_model.embeddings.token_type_ids': torch.zeros(1, 64, dtype=torch.long),
             'vision_model.embeddings.position_ids': torch.arange(17)[None]}
    _, dropped = convert_chinese_clip({**hf_model.state_dict(), **extra}, 'hf', our_config())
    assert dropped == sorted(extra)
    original = hf_to_original(hf_model.state_dict())
    original['bert.pooler.dense.weight'] = torch.zeros(32, 32)
    _, dropped = convert_chinese_clip(original, 'original', our_config())
    assert dropped == ['bert.pooler.dense.weight']


def test_a_temperature_model_gets_the_temperature(hf_model):
    cfg = our_config(temperature=dict(type='Temperature', init=0.07))  # R2D2's tau instead of a logit scale
    converted, _ = convert_chinese_clip(hf_model.state_dict(), 'hf', cfg)
    assert 'temperature.logit_scale' not in converted
    assert float(converted['temperature.temp']) == pytest.approx(math.exp(-LOGIT_SCALE))
    model = build_chinese_clip_model(hf_model.state_dict(), 'hf', cfg)
    assert_same_features(our_features(model), reference_features(hf_model))


# ----------------------------------------------------------------- strictness
def error_of(state_dict, source_format='hf', config=None) -> str:
    with pytest.raises(PretrainedLoadError) as error:
        convert_chinese_clip(state_dict, source_format, config or our_config(), source='tiny.pt')
    return str(error.value)


def test_extra_missing_and_wrong_shaped_tensors_are_named(hf_model):
    sd = dict(hf_model.state_dict())
    sd['vision_model.surprise.weight'] = torch.zeros(3)
    sd['adapter.weight'] = torch.zeros(3)
    del sd['text_model.encoder.layer.1.output.dense.bias']
    sd['text_projection.weight'] = sd['text_projection.weight'].t()  # [H, E]: the original's orientation
    message = error_of(sd)
    for part in ("'tiny.pt'", 'vision_model.surprise.weight (-> image_encoder.model.surprise.weight, not in '
                 'our model)', 'adapter.weight (no rule)',
                 'text_encoder.model.encoder.layer.1.output.dense.bias',
                 'text_projection.weight (-> text_proj.weight) (checkpoint (32, 16) vs model (16, 32))'):
        assert part in message, (part, message)


def test_original_format_problems_are_named_by_their_original_names(hf_model):
    original = hf_to_original(hf_model.state_dict())
    original['visual.attnpool.q_proj.weight'] = torch.zeros(4, 4)  # a ResNet tower: not supported
    original['visual.transformer.resblocks.0.attn.in_proj_weight'] = torch.zeros(96, 16)
    del original['visual.proj']
    message = error_of(original, 'original')
    for part in ('visual.attnpool.q_proj.weight (no rule for the original format)',
                 'visual.transformer.resblocks.0.attn.in_proj_weight (as vision_model.encoder.layers.0.'
                 'self_attn.q_proj.weight) (-> image_encoder.model.encoder.layers.0.self_attn.q_proj.weight) '
                 '(checkpoint (32, 16) vs model (32, 32))',
                 'missing keys (1): vision_proj.weight'):
        assert part in message, (part, message)


def test_a_model_without_the_chinese_clip_options_is_refused_with_a_hint(hf_model):
    cfg = our_config()
    cfg['image_encoder'] = dict(cfg['image_encoder'], cls_post_layernorm=False)
    cfg['projection_head'] = dict(type='ProjectionHead')
    message = error_of(hf_model.state_dict(), config=cfg)
    assert 'vision_model.post_layernorm.weight (-> image_encoder.model.post_layernorm.weight, not in our ' \
           'model, set cls_post_layernorm=True on the image encoder)' in message
    assert 'vision_proj.bias (set bias=False in projection_head)' in message
    assert 'text_proj.bias (set bias=False in projection_head)' in message


def test_not_a_state_dict():
    with pytest.raises(TypeError, match='not a Chinese-CLIP state dict'):
        convert_chinese_clip({'state_dict': {'visual.proj': 'a string'}}, 'original', our_config())
    with pytest.raises(TypeError, match="^tiny.pt: 'visual.proj' is a str"):
        convert_chinese_clip({'state_dict': {'visual.proj': 'a'}}, 'original', our_config(), source='tiny.pt')
    with pytest.raises(TypeError, match='expected a state dict'):
        convert_chinese_clip([torch.zeros(1)], 'original', our_config())


# ----------------------------------------------------------------- the released size
def test_default_config_is_chinese_clip_vit_b16():
    """configs/chinese_clip/chinese_clip_vitb16.py has the shapes and settings of the released model."""
    cfg = inference_model_config()
    vision, text = cfg['image_encoder']['config'], cfg['text_encoder']['config']
    assert cfg['image_encoder']['cls_post_layernorm'] is True
    assert (vision['hidden_size'], vision['num_hidden_layers'], vision['num_attention_heads'],
            vision['patch_size'], vision['image_size']) == (768, 12, 12, 16, 224)
    assert (vision['hidden_act'], vision['layer_norm_eps']) == ('quick_gelu', 1e-5)
    assert (text['vocab_size'], text['hidden_size'], text['num_hidden_layers']) == (21128, 768, 12)
    assert (text['hidden_act'], text['layer_norm_eps']) == ('gelu', 1e-12)
    assert cfg['embed_dim'] == 512 and cfg['projection_head'] == dict(type='ProjectionHead', bias=False)
    assert cfg['data_preprocessor']['max_length'] == 52
    assert cfg['data_preprocessor']['tokenizer'] == dict(name_or_path='OFA-Sys/chinese-clip-vit-base-patch16')
    # transformers' defaults for chinese-clip-vit-base-patch16 (its config.json sets vocab 21128, patch 16)
    released = ChineseCLIPConfig(text_config=dict(vocab_size=21128), vision_config=dict(patch_size=16))
    assert model_config_from_hf(released) == cfg


def test_released_key_list_converts_into_the_default_config():
    """Every tensor name and shape of a real-size ChineseCLIPModel (built on the meta device)."""
    released = ChineseCLIPConfig(text_config=dict(vocab_size=21128), vision_config=dict(patch_size=16))
    with torch.device('meta'):
        hf_state = ChineseCLIPModel(released).state_dict()
    ours = expected_shapes(inference_model_config(DEFAULT_CONFIG))
    for state, fmt in ((hf_state, 'hf'), (hf_to_original(hf_state), 'original')):
        converted, _ = convert_chinese_clip(state, fmt)
        assert {k: v.shape for k, v in converted.items()} == ours
    assert len(hf_state) == len(ours)


# ----------------------------------------------------------------- the encoder option
def test_cls_post_layernorm_gives_the_pooled_cls_and_the_raw_patches(hf_model):
    encoder = HFCLIPVisionEncoder(config=VISION, cls_post_layernorm=True).eval()
    encoder.model.load_state_dict({k[len('vision_model.'):]: v for k, v in hf_model.state_dict().items()
                                   if k.startswith('vision_model.')})
    with torch.no_grad():
        out = encoder(pixels())
        ref = hf_model.vision_model(pixel_values=pixels())
        torch.testing.assert_close(out[:, 0], ref.pooler_output, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(out[:, 1:], ref.last_hidden_state[:, 1:], atol=1e-6, rtol=1e-6)
        # with every patch kept, the patch-dropping path is the same computation
        keep = torch.arange(16).expand(3, -1)
        torch.testing.assert_close(encoder(pixels(), patch_keep=keep), out, atol=1e-5, rtol=1e-5)
    default = HFCLIPVisionEncoder(config=VISION)
    assert isinstance(default.model.post_layernorm, nn.Identity)
    assert 'model.post_layernorm.weight' in encoder.state_dict()


def test_cls_post_layernorm_trains_the_layernorm():
    encoder = HFCLIPVisionEncoder(config=VISION, cls_post_layernorm=True).train()
    encoder(pixels())[:, 0].sum().backward()
    assert encoder.model.post_layernorm.weight.grad is not None
    assert all(p.grad is not None for p in encoder.parameters())


def test_cls_post_layernorm_loads_it_from_a_clip_checkpoint(tmp_path):
    torch.manual_seed(0)
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                vocab_size=100, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    clip = CLIPModel(CLIPConfig(vision_config={**VISION, 'hidden_act': 'quick_gelu'}, text_config=text,
                                projection_dim=16))
    with torch.no_grad():
        clip.vision_model.post_layernorm.weight.normal_()
    clip.save_pretrained(tmp_path)
    encoder = HFCLIPVisionEncoder(config=VISION, pretrained=str(tmp_path), cls_post_layernorm=True)
    encoder.init_weights()
    assert torch.equal(encoder.model.post_layernorm.weight, clip.vision_model.post_layernorm.weight)
    with torch.no_grad():
        pooled = clip.vision_model(pixel_values=pixels()).pooler_output
        torch.testing.assert_close(encoder(pixels())[:, 0], pooled, atol=1e-6, rtol=1e-6)


# ----------------------------------------------------------------- tools/convert/chinese_clip.py
def load_tool():
    spec = importlib.util.spec_from_file_location('convert_chinese_clip', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_config(tmp_path: Path, vocab_file: str) -> Path:
    cfg = copy.deepcopy(our_config())
    cfg['data_preprocessor']['tokenizer'] = dict(vocab_file=vocab_file)
    path = tmp_path / 'tiny_chinese_clip.py'
    path.write_text(f'model = {cfg!r}\n')
    return path


def test_tool_converts_a_transformers_folder(tmp_path, hf_model, vocab_file, capsys):
    src = tmp_path / 'hf'
    hf_model.save_pretrained(src)
    build_tokenizer(dict(vocab_file=vocab_file)).save_pretrained(str(src))  # the folder's own tokenizer
    load_tool().main([str(src), str(tmp_path / 'out')])
    out = capsys.readouterr().out
    assert 'hf format' in out and 'tensors mapped: ' in out and 'dropped by name (unused): 0' in out
    model = DualEncoderModel.from_pretrained(tmp_path / 'out')
    assert model.image_encoder.cls_post_layernorm and model.vision_proj.bias is None
    assert_same_features(our_features(model), reference_features(hf_model))
    assert model.tokenize(['一个红色的圆'])['input_ids'][0, :3].tolist() == [2, 5, 6]
    assert model.data_preprocessor.max_length == 52


def test_tool_converts_an_original_checkpoint(tmp_path, hf_model, vocab_file, capsys):
    src = tmp_path / 'clip_cn_tiny.pt'
    checkpoint = original_checkpoint(hf_model)
    checkpoint['state_dict']['module.bert.pooler.dense.weight'] = torch.zeros(32, 32)
    torch.save(checkpoint, src)
    load_tool().main([str(src), str(tmp_path / 'out'), '--config', str(write_config(tmp_path, vocab_file)),
                      '--tokenizer', vocab_file])
    out = capsys.readouterr().out
    assert 'original format' in out and 'bert.pooler.dense.weight' in out
    model = DualEncoderModel.from_pretrained(tmp_path / 'out')
    assert_same_features(our_features(model), reference_features(hf_model))
    assert json.loads((tmp_path / 'out' / 'config.json').read_text())['converted_from'] == src.name
    card = (tmp_path / 'out' / 'README.md').read_text()
    assert '# Chinese-CLIP (clip_cn_tiny.pt) for r2d2lib' in card and '\nlicense: other\n' in card


def test_tool_converts_a_transformers_state_dict_file(tmp_path, hf_model, vocab_file):
    src = tmp_path / 'model.safetensors'
    save_file({k: v.contiguous() for k, v in hf_model.state_dict().items()}, str(src))
    load_tool().main([str(src), str(tmp_path / 'out'), '--config', str(write_config(tmp_path, vocab_file))])
    assert_same_features(our_features(DualEncoderModel.from_pretrained(tmp_path / 'out')),
                         reference_features(hf_model))


def test_tool_stops_on_a_mismatch_before_writing(tmp_path, hf_model, vocab_file):
    src = tmp_path / 'hf'
    hf_model.save_pretrained(src)
    sd = load_file(src / 'model.safetensors')
    sd['vision_model.encoder.layers.0.mlp.fc1.weight'] = torch.zeros(65, 32)
    save_file(sd, str(src / 'model.safetensors'), metadata={'format': 'pt'})
    with pytest.raises(PretrainedLoadError, match='vision_model.encoder.layers.0.mlp.fc1.weight'):
        load_tool().main([str(src), str(tmp_path / 'out'), '--tokenizer', vocab_file])
    assert not (tmp_path / 'out').exists()
    original = tmp_path / 'bad.pt'
    state = hf_to_original(hf_model.state_dict())
    state['visual.extra'] = torch.zeros(1)
    torch.save(state, original)
    config = str(write_config(tmp_path, vocab_file))
    with pytest.raises(PretrainedLoadError, match='visual.extra'):
        load_tool().main([str(original), str(tmp_path / 'out'), '--config', config])
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('name', ['clip_cn_tiny.pt', 'model.safetensors'])
def test_tool_names_a_truncated_file(name, tmp_path, hf_model, vocab_file):
    src = tmp_path / name
    if src.suffix == '.pt':
        torch.save(original_checkpoint(hf_model), src)
    else:
        save_file({k: v.contiguous() for k, v in hf_model.state_dict().items()}, str(src))
    data = src.read_bytes()
    src.write_bytes(data[:len(data) // 2])
    argv = [str(src), str(tmp_path / 'out'), '--config', str(write_config(tmp_path, vocab_file))]
    with pytest.raises(SystemExit, match=re.escape(f'error: {src} is not a readable ') + '.*truncated'):
        load_tool().main(argv)
    assert not (tmp_path / 'out').exists()


def test_tool_model_fills_the_card_from_the_model_zoo(tmp_path, hf_model, vocab_file):
    src = tmp_path / 'clip_cn_tiny.pt'
    torch.save(original_checkpoint(hf_model), src)
    argv = [str(src), str(tmp_path / 'out'), '--config', str(write_config(tmp_path, vocab_file))]
    with pytest.raises(SystemExit, match="--model: 'prd2_vitl' is not a model-zoo model"):
        load_tool().main(argv + ['--model', 'prd2_vitl'])
    load_tool().main(argv + ['--model', 'prd2_vitl_250m'])
    card = (tmp_path / 'out' / 'README.md').read_text()
    assert '(prd2_vitl_250m)' in card and 'Chinese CLIP:' not in card
    assert 'Weights converted from `clip_cn_tiny.pt`' in card


def test_tool_refuses_bad_arguments(tmp_path):
    with pytest.raises(SystemExit, match='does not exist'):
        load_tool().main([str(tmp_path / 'nope.pt'), str(tmp_path / 'out')])
    (tmp_path / 'folder').mkdir()
    with pytest.raises(SystemExit, match='--format original takes a checkpoint file'):
        load_tool().main([str(tmp_path / 'folder'), str(tmp_path / 'out'), '--format', 'original'])
