"""The converter of the official R2D2 / PRD2 checkpoints.

A tiny official-layout state dict (exactly the official names, from the reference key lists, at
tiny widths and depths) is run through an independent implementation of the official forward,
written here from the reference description of the official release alone (HF CLIP ViT and BERT, the cross
encoders by hand), and through our converted model; embeddings and matching scores must agree, and
so must the re-ranking of the official evaluation (top-k by cosine, re-scored by matching score +
cosine: ``test_converted_model_reranks_as_the_official_evaluation``).
The real-size key lists must convert into our real-size configs exactly.
"""
import copy
import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import save_file
from transformers import BertConfig, BertModel, CLIPVisionConfig, CLIPVisionModel

from r2d2lib import load_model
from r2d2lib.converters import ARCH_CONFIGS, build_converted_model, convert_official_state_dict
from r2d2lib.converters.building import expected_shapes
from r2d2lib.converters.official_r2d2 import (
    inference_model_config,
    official_to_ours,
    ours_to_official,
)
from r2d2lib.io import PretrainedLoadError

torch.set_num_threads(1)

ROOT = Path(__file__).parents[2]
REFERENCE = Path(__file__).parent / 'official_keys'  # the official key lists (name, shape, dtype)
KEY_FILES = {'r2d2_vitb': 'r2d2_vit_base.keys.txt', 'r2d2_vitl': 'r2d2_vit_large.keys.txt',
             'prd2_vitl': 'prd2_vit_large.keys.txt'}

# ----------------------------------------------------------------- tiny sizes
V, VF, P, IMAGE = 48, 96, 8, 32  # ViT width, FFN width, patch, image side (ViT != text width on purpose)
NPOS = (IMAGE // P) ** 2 + 1
T, TF, VOCAB, TPOS = 32, 64, 64, 64  # BERT width, FFN width, vocabulary, positions
I_W = 40  # image-text cross encoder width (!= text width, to catch a swapped kv width)
E = 24  # retrieval embedding width
LAYERS, HEADS = 2, 2  # every tower and cross encoder
MAX_LENGTH = 16

UNUSED_DUAL = {'visual_encoder.post_layernorm.weight', 'visual_encoder.post_layernorm.bias',
               'text_encoder.pooler.dense.weight', 'text_encoder.pooler.dense.bias'}
UNUSED_R2D2 = UNUSED_DUAL | {
    f'{module}.embeddings.{name}' for module in ('text_joint_layer', 'img_joint_layer')
    for name in ('word_embeddings.weight', 'position_embeddings.weight', 'LayerNorm.weight',
                 'LayerNorm.bias', 'position_ids')}
UNUSED = {'r2d2_vitb': UNUSED_R2D2, 'r2d2_vitl': UNUSED_R2D2, 'prd2_vitl': UNUSED_DUAL}

VOCAB_TOKENS = (['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
                + list('一个红色的圆蓝方块在左上绿三角形和小黄星大')
                + ['a', 'red', 'blue', 'circle', 'square', '##s', 'on', 'the', 'left'])
VOCAB_TOKENS += [f'[unused{i}]' for i in range(VOCAB - len(VOCAB_TOKENS))]
TEXTS = ['一个红色的圆', '蓝色方块在左上', 'a red circle', '大的绿色三角形和小的黄色星星在上']


def read_keys(arch: str) -> list[tuple[str, tuple, str]]:
    """(name, shape, dtype) of every tensor of an official checkpoint, from the reference list."""
    rows = []
    for line in (REFERENCE / KEY_FILES[arch]).read_text().splitlines():
        if line and not line.startswith('#'):
            name, shape, dtype = line.split('\t')
            rows.append((name, tuple(int(d) for d in re.findall(r'\d+', shape)), dtype))
    return rows


def tiny_shape(name: str) -> tuple:
    """The shape of an official tensor in the tiny configuration, from its name."""
    heads = {'temp': (), 'vision_proj.weight': (E, V), 'vision_proj.bias': (E,),
             'text_proj.weight': (E, T), 'text_proj.bias': (E,),
             'img_joint_proj.weight': (I_W, V), 'img_joint_proj.bias': (I_W,),
             'itm_head.weight': (2, T), 'itm_head.bias': (2,),
             'itm_head_i.weight': (2, I_W), 'itm_head_i.bias': (2,)}
    if name in heads:
        return heads[name]
    module, rest = name.split('.', 1)
    if module == 'visual_encoder':
        special = {'embeddings.class_embedding': (V,), 'embeddings.patch_embedding.weight': (V, 3, P, P),
                   'embeddings.position_embedding.weight': (NPOS, V)}
        if rest in special:
            return special[rest]
        for suffix, shape in (('fc1.weight', (VF, V)), ('fc1.bias', (VF,)), ('fc2.weight', (V, VF))):
            if rest.endswith(suffix):
                return shape
        return (V, V) if rest.endswith('proj.weight') else (V,)
    width, kv_width, ffn = {'text_encoder': (T, None, TF), 'text_joint_layer': (T, V, 4 * T),
                            'img_joint_layer': (I_W, T, 4 * I_W)}[module]
    special = {'embeddings.word_embeddings.weight': (VOCAB, width),
               'embeddings.position_embeddings.weight': (TPOS, width),
               'embeddings.token_type_embeddings.weight': (2, width), 'embeddings.position_ids': (1, TPOS)}
    if rest in special:
        return special[rest]
    if re.search(r'crossattention\.self\.(key|value)\.weight$', rest):
        return (width, kv_width)
    if rest.endswith('intermediate.dense.weight'):
        return (ffn, width)
    if rest.endswith('intermediate.dense.bias'):
        return (ffn,)
    if re.search(r'layer\.\d+\.output\.dense\.weight$', rest):
        return (width, ffn)
    return (width, width) if rest.endswith('.weight') and 'LayerNorm' not in rest else (width,)


def tiny_official_state_dict(arch: str, seed: int = 0) -> dict:
    """An official-layout state dict (the official names, LAYERS layers each) of seeded random values."""
    gen = torch.Generator().manual_seed(seed)
    state_dict = {}
    for name, _, dtype in read_keys(arch):
        layer = re.search(r'\.layers?\.(\d+)\.', name)
        if layer and int(layer.group(1)) >= LAYERS:
            continue
        shape = tiny_shape(name)
        if dtype == 'int64':
            value = torch.arange(shape[-1]).expand(shape).clone()
        elif name == 'temp':
            value = torch.tensor(0.05)
        elif len(shape) >= 2:
            value = torch.randn(shape, generator=gen) / math.sqrt(math.prod(shape[1:]))
        elif re.search(r'(norm\d?|LayerNorm)\.weight$', name):
            value = 1 + 0.2 * torch.randn(shape, generator=gen)
        else:
            value = 0.2 * torch.randn(shape, generator=gen)
        state_dict[name] = value
    return state_dict


def tiny_model_cfg(arch: str, vocab_file: str) -> dict:
    """Our model config at the tiny sizes (before the converter makes it inference-only)."""
    cfg = dict(
        type='DualEncoderModel',
        data_preprocessor=dict(type='ImageTextDataPreprocessor', image_size=IMAGE,
                               tokenizer=dict(vocab_file=vocab_file), max_length=MAX_LENGTH),
        image_encoder=dict(type='HFCLIPVisionEncoder', frozen=True,
                           pretrained='openai/clip-vit-base-patch16',  # must be ignored
                           config=dict(hidden_size=V, intermediate_size=VF, num_hidden_layers=LAYERS,
                                       num_attention_heads=HEADS, image_size=IMAGE, patch_size=P)),
        text_encoder=dict(type='HFBertEncoder',
                          config=dict(vocab_size=VOCAB, hidden_size=T, num_hidden_layers=LAYERS,
                                      num_attention_heads=HEADS, intermediate_size=TF,
                                      max_position_embeddings=TPOS)),
        embed_dim=E,
        # the training objective, which the converter must leave out
        objective=dict(
            type='ContrastiveObjective',
            contrastive=dict(type='TargetDistillLoss', alpha=0.4),
            teacher=dict(type='MomentumTeacher', momentum=0.995),
            queue=dict(type='FeatureQueue', size=8, decay=0.99),
            fgd=dict(type='FeatureGuidedDistiller'),
            weights=dict(gcpr=1.0, fgd=1.0)))
    if arch.startswith('r2d2'):
        cfg.update(
            type='R2D2Model',
            text_image_encoder=dict(type='CrossEncoder', width=T, kv_width=V, num_layers=LAYERS,
                                    num_heads=HEADS),
            image_text_encoder=dict(type='CrossEncoder', width=I_W, kv_width=T, num_layers=LAYERS,
                                    num_heads=HEADS))
        cfg['objective'].update(type='R2D2Objective', fgr=dict(type='FGRLoss'), mlm_head=dict(type='MLMHead'),
                                weights=dict(gcpr=1.0, fgr=1.0, fgd=1.0, mlm=1.0))
    return cfg


@pytest.fixture(scope='module')
def vocab_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp('vocab') / 'vocab.txt'
    path.write_text('\n'.join(VOCAB_TOKENS) + '\n', encoding='utf-8')
    return str(path)


# ----------------------------------------------------------------- the official forward, independently
def sub_state_dict(state_dict: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def linear(sd: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, sd[name + '.weight'], sd[name + '.bias'])


def reference_image_tokens(sd: dict, pixels: torch.Tensor) -> torch.Tensor:
    """HF CLIPVisionTransformer's encoder output (before post_layernorm), as the official code."""
    vit = CLIPVisionModel(CLIPVisionConfig(
        hidden_size=V, intermediate_size=VF, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        image_size=IMAGE, patch_size=P, hidden_act='quick_gelu', layer_norm_eps=1e-5,
        attn_implementation='eager'))
    getattr(vit, 'vision_model', vit).load_state_dict(sub_state_dict(sd, 'visual_encoder.'), strict=True)
    return vit.eval()(pixel_values=pixels).last_hidden_state


def reference_text_hidden(sd: dict, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """HF BertModel (with its unused pooler) loaded with text_encoder.*."""
    bert = BertModel(BertConfig(
        vocab_size=VOCAB, hidden_size=T, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=TF, hidden_act='gelu', layer_norm_eps=1e-12, max_position_embeddings=TPOS,
        type_vocab_size=2, attn_implementation='eager'), add_pooling_layer=True)
    bert.load_state_dict(sub_state_dict(sd, 'text_encoder.'), strict=True)
    return bert.eval()(input_ids=input_ids, attention_mask=mask).last_hidden_state


def reference_cross_encoder(sd: dict, prefix: str, x: torch.Tensor, context: torch.Tensor,
                            x_mask, context_mask) -> torch.Tensor:
    """The official cross encoder: per layer self-attn, cross-attn, FFN; post-LN; additive key masks."""
    def additive(mask):
        return None if mask is None else (1.0 - mask[:, None, None, :].float()) * -10000.0

    def layer_norm(h, name):
        return F.layer_norm(h, h.shape[-1:], sd[name + '.weight'], sd[name + '.bias'], eps=1e-12)

    def attention(h, ctx, mask, name):
        b, n, width = h.shape
        d = width // HEADS
        q = linear(sd, name + '.self.query', h).view(b, n, HEADS, d).transpose(1, 2)
        k = linear(sd, name + '.self.key', ctx).view(b, -1, HEADS, d).transpose(1, 2)
        v = linear(sd, name + '.self.value', ctx).view(b, -1, HEADS, d).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d)
        if mask is not None:
            scores = scores + mask
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, width)
        return layer_norm(linear(sd, name + '.output.dense', out) + h, name + '.output.LayerNorm')

    num_layers = len({k.split('.')[3] for k in sd if k.startswith(prefix + '.encoder.layer.')})
    for i in range(num_layers):
        name = f'{prefix}.encoder.layer.{i}'
        x = attention(x, x, additive(x_mask), name + '.attention')
        x = attention(x, context, additive(context_mask), name + '.crossattention')
        ffn = linear(sd, name + '.output.dense', F.gelu(linear(sd, name + '.intermediate.dense', x)))
        x = layer_norm(ffn + x, name + '.output.LayerNorm')
    return x


@torch.no_grad()
def reference_forward(sd: dict, pixels, input_ids, mask, with_match: bool = True) -> dict:
    image_tokens = reference_image_tokens(sd, pixels)
    text_hidden = reference_text_hidden(sd, input_ids, mask)
    out = dict(image_embeds=F.normalize(linear(sd, 'vision_proj', image_tokens[:, 0]), dim=-1),
               text_embeds=F.normalize(linear(sd, 'text_proj', text_hidden[:, 0]), dim=-1))
    if with_match:
        text_image = reference_cross_encoder(sd, 'text_joint_layer', text_hidden, image_tokens, mask, None)
        fusion_tokens = linear(sd, 'img_joint_proj', image_tokens)
        image_text = reference_cross_encoder(sd, 'img_joint_layer', fusion_tokens, text_hidden, None, mask)
        out['match'] = (linear(sd, 'itm_head', text_image[:, 0]).softmax(-1)[:, 1]
                        + linear(sd, 'itm_head_i', image_text[:, 0]).softmax(-1)[:, 1]) / 2
    return out


def toy_inputs(model, num_images: int = 3):
    """Every (image, text) pair of random images and the toy texts (padded to MAX_LENGTH)."""
    pixels = torch.randn(num_images, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(1))
    tokens = model.tokenize(TEXTS)
    ids, mask = tokens['input_ids'], tokens['attention_mask']
    assert (mask == 0).any() and len(set(mask.sum(1).tolist())) == len(TEXTS)  # padded, lengths differ
    pair_images = pixels.repeat_interleave(len(TEXTS), 0)
    return pixels, ids, mask, pair_images, ids.repeat(num_images, 1), mask.repeat(num_images, 1)


def check_parity(arch: str, model, official: dict) -> None:
    pixels, ids, mask, pair_images, pair_ids, pair_mask = toy_inputs(model)
    with_match = arch.startswith('r2d2')
    ref = reference_forward(official, pixels, ids, mask, with_match=False)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(pixels), ref['image_embeds'], atol=1e-5, rtol=0)
        torch.testing.assert_close(model.encode_text(ids, mask), ref['text_embeds'], atol=1e-5, rtol=0)
        assert model.temperature.temp.item() == official['temp'].item()
        if with_match:
            ref_match = reference_forward(official, pair_images, pair_ids, pair_mask)['match']
            assert ref_match.std() > 0.02 and 0.02 < ref_match.min() and ref_match.max() < 0.98  # informative
            torch.testing.assert_close(model.match(pair_images, pair_ids, pair_mask), ref_match,
                                       atol=1e-5, rtol=0)


# ----------------------------------------------------------------- tests: tiny parity
def test_tiny_shapes_have_the_rank_of_the_official_ones():
    for arch in KEY_FILES:
        for name, shape, _ in read_keys(arch):
            assert len(tiny_shape(name)) == len(shape), name


@pytest.mark.parametrize('arch', ['r2d2_vitb', 'prd2_vitl'])
def test_converted_model_reproduces_the_official_forward(arch, vocab_file):
    official = tiny_official_state_dict(arch)
    model = build_converted_model(arch, official, tiny_model_cfg(arch, vocab_file))
    assert type(model).__name__ == ('R2D2Model' if arch.startswith('r2d2') else 'DualEncoderModel')
    assert not model.training
    assert model.objective is None  # no teacher, queue, FgD, MLM head: the architecture only
    assert type(model.temperature).__name__ == 'Temperature'
    check_parity(arch, model, official)


RERANK_TEXTS = TEXTS + ['a blue square on the left', '黄色的星', '三个绿色方块', 'the red circles',
                        '左上的蓝色三角形', '小圆', 'a circle on the left', '红色和黄色的大方块']


def official_rerank(image_embeds, text_embeds, match, k_i2t: int, k_t2i: int) -> dict:
    """The official evaluation's re-ranking, one query at a time: the top-k candidates by cosine
    similarity, each scored matching score + cosine similarity; the rest rank below all of them.
    ``match[i, t]`` is the matching score of image i and text t. Returns, per direction, the re-ranked
    top-k of every query and their final scores."""
    sims, match = (image_embeds @ text_embeds.t()).tolist(), match.tolist()
    out = {'i2t': [], 't2i': [], 'i2t_scores': [], 't2i_scores': []}
    for direction, k, rows in (('i2t', k_i2t, sims), ('t2i', k_t2i, [list(col) for col in zip(*sims)])):
        for q, row in enumerate(rows):
            top = sorted(range(len(row)), key=lambda c: -row[c])[:k]
            rest = [row[c] for c in range(len(row)) if c not in top]
            final = {c: (match[q][c] if direction == 'i2t' else match[c][q]) + row[c] for c in top}
            order = sorted(top, key=lambda c: -final[c])
            out[direction].append(order)
            out[direction + '_scores'].append([final[c] for c in order])
            # informative inputs: a clear top-k boundary, no near-ties among the re-ranked scores
            assert row[top[-1]] - max(rest) > 1e-4, (direction, q)
            assert all(final[a] - final[b] > 1e-4 for a, b in zip(order, order[1:])), (direction, q)
    return out


@torch.no_grad()
def test_converted_model_reranks_as_the_official_evaluation(vocab_file):
    """Re-ranking parity: the official per-query loop on the official forward, and r2d2lib's
    chunked_topk + rerank_topk scored by the converted model's match_features (as RetrievalValLoop)."""
    from r2d2lib.evaluation.ranking import chunked_topk, rerank_topk

    arch, num_images, k_i2t, k_t2i = 'r2d2_vitb', 6, 5, 3
    official = tiny_official_state_dict(arch)
    model = build_converted_model(arch, official, tiny_model_cfg(arch, vocab_file))
    pixels = torch.randn(num_images, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(2))
    tokens = model.tokenize(RERANK_TEXTS)
    ids, mask = tokens['input_ids'], tokens['attention_mask']
    num_texts = len(RERANK_TEXTS)

    # official: embeddings and the matching score of every (image, text) pair, then the per-query loop
    ref = reference_forward(official, pixels, ids, mask, with_match=False)
    ref_match = reference_forward(official, pixels.repeat_interleave(num_texts, 0), ids.repeat(num_images, 1),
                                  mask.repeat(num_images, 1))['match'].view(num_images, num_texts)
    expected = official_rerank(ref['image_embeds'], ref['text_embeds'], ref_match, k_i2t, k_t2i)

    # ours: the features RetrievalValLoop keeps, chunked top-k, re-ranking by match_features
    image_tokens, image_embeds = model.image_features(pixels)
    text_hidden, text_embeds = model.text_features(ids, mask)
    for direction, queries, gallery, k in (('i2t', image_embeds, text_embeds, k_i2t),
                                           ('t2i', text_embeds, image_embeds, k_t2i)):
        def score(query_idx, cand_idx, direction=direction):
            image_idx, text_idx = (query_idx, cand_idx) if direction == 'i2t' else (cand_idx, query_idx)
            return model.match_features(image_tokens[image_idx], text_hidden[text_idx], mask[text_idx])

        sims, indices = chunked_topk(queries, gallery, k, chunk_size=4)
        final, reranked = rerank_topk(indices, sims, score, batch_size=7, progress=False)
        assert reranked.tolist() == expected[direction], direction
        torch.testing.assert_close(final, torch.tensor(expected[direction + '_scores']), atol=1e-5, rtol=0)
        assert reranked.tolist() != indices.tolist(), direction  # the matching scores change the order


@pytest.mark.parametrize('arch', ['r2d2_vitb', 'prd2_vitl'])
def test_dropped_keys_are_exactly_the_unused_ones(arch, vocab_file):
    official = tiny_official_state_dict(arch)
    converted, dropped = convert_official_state_dict(official, arch, tiny_model_cfg(arch, vocab_file))
    assert set(dropped) == UNUSED[arch] and dropped == sorted(dropped)
    assert len(converted) == len(official) - len(UNUSED[arch])
    for name, tensor in official.items():
        if name not in UNUSED[arch]:
            assert converted[official_to_ours(name, arch)] is tensor


def test_wrapped_checkpoint_with_module_prefix(vocab_file):
    official = tiny_official_state_dict('r2d2_vitb')
    cfg = tiny_model_cfg('r2d2_vitb', vocab_file)
    expected, _ = convert_official_state_dict(official, 'r2d2_vitb', cfg)
    for checkpoint in ({'model': official, 'epoch': 3, 'config': {'lr': 1e-4}},
                       {f'module.{k}': v for k, v in official.items()},
                       {'model': {f'module.{k}': v for k, v in official.items()}}):
        converted, dropped = convert_official_state_dict(checkpoint, 'r2d2_vitb', cfg)
        assert converted.keys() == expected.keys() and set(dropped) == UNUSED_R2D2


@pytest.mark.parametrize('edit, named', [
    (lambda sd: sd.update({'visual_encoder.extra_proj.weight': torch.zeros(2, 2)}),
     'visual_encoder.extra_proj.weight'),
    (lambda sd: sd.update({'itm_head_j.weight': torch.zeros(2, 2)}), 'itm_head_j.weight'),
    (lambda sd: sd.update({'text_joint_layer.encoder.layer.2.output.dense.bias': torch.zeros(T)}),
     'text_joint_layer.encoder.layer.2.output.dense.bias'),
    (lambda sd: sd.pop('itm_head_i.bias'), 'itm_head_i.bias'),
    (lambda sd: sd.pop('visual_encoder.encoder.layers.1.mlp.fc2.weight'),
     'visual_encoder.encoder.layers.1.mlp.fc2.weight'),
    (lambda sd: sd.update({'text_proj.weight': torch.zeros(E, T + 1)}), 'text_proj.weight'),
    (lambda sd: sd.update({'temp': torch.zeros(1)}), 'temp'),
], ids=['extra-no-rule-prefix', 'extra-no-rule', 'extra-layer', 'missing-head', 'missing-vit', 'shape',
        'shape-temp'])
def test_unmatched_missing_or_wrong_shaped_tensors_raise_naming_them(edit, named, vocab_file):
    official = tiny_official_state_dict('r2d2_vitb')
    edit(official)
    with pytest.raises(PretrainedLoadError, match=re.escape(named)):
        convert_official_state_dict(official, 'r2d2_vitb', tiny_model_cfg('r2d2_vitb', vocab_file))


def test_every_problem_is_listed_at_once(vocab_file):
    official = tiny_official_state_dict('r2d2_vitb')
    official['foo.bar'] = torch.zeros(1)
    del official['vision_proj.bias']
    official['img_joint_proj.weight'] = torch.zeros(3, 3)
    with pytest.raises(PretrainedLoadError) as info:
        convert_official_state_dict(official, 'r2d2_vitb', tiny_model_cfg('r2d2_vitb', vocab_file))
    message = str(info.value)
    assert 'foo.bar' in message and 'vision_proj.bias (-> vision_proj.bias)' in message
    assert 'img_joint_proj.weight (-> image_fusion_proj.weight)' in message and '(3, 3)' in message


def test_r2d2_checkpoint_is_not_a_prd2_one(vocab_file):
    with pytest.raises(PretrainedLoadError, match=r'unexpected keys \(120\): img_joint_layer\.'):
        convert_official_state_dict(tiny_official_state_dict('r2d2_vitb'), 'prd2_vitl',
                                    tiny_model_cfg('prd2_vitl', vocab_file))
    with pytest.raises(PretrainedLoadError, match='missing keys'):
        convert_official_state_dict(tiny_official_state_dict('prd2_vitl'), 'r2d2_vitb',
                                    tiny_model_cfg('r2d2_vitb', vocab_file))


def test_a_real_checkpoint_of_another_arch_is_named():
    with pytest.raises(PretrainedLoadError, match="like r2d2_vitl, not r2d2_vitb: try arch 'r2d2_vitl'"):
        convert_official_state_dict(meta_state_dict('r2d2_vitl'), 'r2d2_vitb')
    with pytest.raises(PretrainedLoadError, match="looks like r2d2_vitl, not prd2_vitl"):
        convert_official_state_dict(meta_state_dict('r2d2_vitl'), 'prd2_vitl')


def test_bad_inputs():
    with pytest.raises(KeyError, match='r2d2_vith'):
        convert_official_state_dict({}, 'r2d2_vith')
    with pytest.raises(TypeError, match="^'epoch' is a int"):
        convert_official_state_dict({'epoch': 3}, 'r2d2_vitb')
    with pytest.raises(TypeError, match="^ckpt.pth: 'epoch' is a int, not a tensor"):
        convert_official_state_dict({'epoch': 3}, 'r2d2_vitb', source='ckpt.pth')
    with pytest.raises(TypeError, match='^ckpt.pth: expected a state dict'):
        convert_official_state_dict([], 'r2d2_vitb', source='ckpt.pth')


def test_the_config_temperature_is_the_checkpoints_rounded_as_every_export(vocab_file, tmp_path):
    official = tiny_official_state_dict('prd2_vitl')
    official['temp'] = torch.tensor(0.0123456789)
    model = build_converted_model('prd2_vitl', official, tiny_model_cfg('prd2_vitl', vocab_file))
    assert model.temperature.temp.item() == official['temp'].item()  # the tensor: exact
    assert model.model_config['temperature']['init'] == 0.0123457  # the config: 6 digits
    saved = json.loads((model.save_pretrained(tmp_path / 'out') / 'config.json').read_text())
    assert saved['model']['temperature']['init'] == 0.0123457


# ----------------------------------------------------------------- tests: real-size key lists
def meta_state_dict(arch: str) -> dict:
    return {name: torch.empty(shape, dtype=getattr(torch, dtype), device='meta')
            for name, shape, dtype in read_keys(arch)}


@pytest.mark.parametrize('arch', list(KEY_FILES))
def test_real_size_key_lists_convert_into_our_configs_exactly(arch):
    official = meta_state_dict(arch)
    converted, dropped = convert_official_state_dict(official, arch)  # our ARCH_CONFIGS model
    assert set(dropped) == UNUSED[arch]
    ours = expected_shapes(inference_model_config(arch))
    assert converted.keys() == ours.keys()
    assert all(converted[k].shape == ours[k] for k in ours)
    assert len(converted) == {'r2d2_vitb': 717, 'r2d2_vitl': 909, 'prd2_vitl': 591}[arch]
    for name in official:  # the rename is one to one
        if name not in UNUSED[arch]:
            assert ours_to_official(official_to_ours(name, arch), arch) == name


def test_inference_configs_have_no_training_parts():
    for arch, path in ARCH_CONFIGS.items():
        assert (ROOT / path).is_file()
        cfg = inference_model_config(arch)
        for tower in ('image_encoder', 'text_encoder'):  # nothing is downloaded (absent: the default None)
            assert cfg[tower].get('pretrained') is None
        assert 'objective' not in cfg  # no teacher, queue, FgD, MLM head, losses
        assert cfg['temperature']['type'] == 'Temperature'  # holds the official `temp`
        assert tuple(cfg['temperature']['temperature_range']) == (0.001, 0.5)  # the official clamp
        assert cfg['type'] == ('R2D2Model' if arch.startswith('r2d2') else 'DualEncoderModel')
    assert inference_model_config('r2d2_vitl')['text_image_encoder']['kv_width'] == 1024


# ----------------------------------------------------------------- tests: the command-line tool
TOOL = ROOT / 'tools' / 'convert' / 'official_r2d2.py'


def write_tiny_config(tmp_path: Path, arch: str, vocab_file: str) -> Path:
    path = tmp_path / f'tiny_{arch}.py'
    path.write_text(f'model = {tiny_model_cfg(arch, vocab_file)!r}\n')
    return path


def load_output_dir(out_dir: Path):
    """The model the tool wrote (a ``save_pretrained`` folder), loaded strictly."""
    files = {p.name for p in out_dir.iterdir()}
    assert {'config.json', 'model.safetensors'} <= files
    assert json.loads((out_dir / 'config.json').read_text())['architecture']
    return load_model(out_dir)


def test_tool_converts_a_checkpoint_file(tmp_path, vocab_file):
    arch = 'r2d2_vitb'
    official = tiny_official_state_dict(arch)
    src = tmp_path / 'r2d2_tiny.pth'
    torch.save({'model': official, 'epoch': 7, 'config': {'image_res': IMAGE}}, src)
    config = write_tiny_config(tmp_path, arch, vocab_file)
    out_dir = tmp_path / 'out'
    result = subprocess.run(
        [sys.executable, str(TOOL), str(src), str(out_dir), '--arch', arch, '--config', str(config),
         '--tokenizer', vocab_file],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={'HF_HUB_OFFLINE': '1', 'PATH': '/usr/bin:/bin', 'OMP_NUM_THREADS': '1'})
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert f'tensors mapped: {len(official) - len(UNUSED_R2D2)}' in out
    assert f'dropped by name (unused by the official model): {len(UNUSED_R2D2)}' in out
    assert all(name in out for name in UNUSED_R2D2)
    assert 'parameters: ' in out and 'temperature: 0.05 ' in out
    model = load_output_dir(out_dir)
    check_parity(arch, model, official)
    # the source is recorded; without --model the card is generic, and claims no license
    assert json.loads((out_dir / 'config.json').read_text())['converted_from'] == 'r2d2_tiny.pth'
    card = (out_dir / 'README.md').read_text()
    assert yaml.safe_load(card.split('---\n')[1])['license'] == 'other'
    assert 'Weights converted from `r2d2_tiny.pth`' in card and '## Results' not in card


def load_tool():
    spec = importlib.util.spec_from_file_location('convert_official_r2d2', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool_unpickles_fully_only_with_allow_pickle(tmp_path, vocab_file, capsys):
    import argparse
    tool = load_tool()
    arch = 'prd2_vitl'
    official = tiny_official_state_dict(arch)
    src = tmp_path / 'prd2_tiny.pth'
    torch.save({'model': official, 'args': argparse.Namespace(lr=1e-4)}, src)  # not weights-only
    argv = [str(src), str(tmp_path / 'out'), '--arch', arch, '--config',
            str(write_tiny_config(tmp_path, arch, vocab_file))]
    with pytest.raises(SystemExit, match='--allow-pickle'):
        tool.main(argv)
    assert not (tmp_path / 'out').exists()
    tool.main(argv + ['--allow-pickle'])
    assert 'unpickling it fully' in capsys.readouterr().err
    check_parity(arch, load_output_dir(tmp_path / 'out'), official)


def test_tool_refuses_a_missing_file(tmp_path):
    with pytest.raises(SystemExit, match='not a file'):
        load_tool().main([str(tmp_path / 'nope.pth'), str(tmp_path / 'out'), '--arch', 'r2d2_vitb'])


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_tool_names_a_truncated_file(suffix, tmp_path, vocab_file):
    arch = 'prd2_vitl'
    src = tmp_path / f'prd2_tiny{suffix}'
    official = tiny_official_state_dict(arch)
    if suffix == '.pth':
        torch.save({'model': official}, src)
    else:
        save_file(official, str(src))
    data = src.read_bytes()
    src.write_bytes(data[:len(data) // 2])
    argv = [str(src), str(tmp_path / 'out'), '--arch', arch, '--config',
            str(write_tiny_config(tmp_path, arch, vocab_file))]
    unreadable = re.escape(f'error: {src} is not a readable ') + '.*truncated or corrupt'
    with pytest.raises(SystemExit, match=unreadable):
        load_tool().main(argv)
    assert not (tmp_path / 'out').exists()


def test_tool_model_fills_the_card_from_the_model_zoo(tmp_path, vocab_file):
    arch = 'prd2_vitl'
    src = tmp_path / 'prd2_pretrain_250m.pth'
    torch.save({'model': tiny_official_state_dict(arch)}, src)
    out_dir = tmp_path / 'out'
    argv = [str(src), str(out_dir), '--arch', arch, '--config',
            str(write_tiny_config(tmp_path, arch, vocab_file))]
    with pytest.raises(SystemExit, match="--model: 'prd2_vitl_25m' is not a model-zoo model; close names"):
        load_tool().main(argv + ['--model', 'prd2_vitl_25m'])
    with pytest.raises(SystemExit, match='--model r2d2_vitl_250m is a r2d2_vitl checkpoint, not --arch prd2'):
        load_tool().main(argv + ['--model', 'r2d2_vitl_250m'])
    assert not out_dir.exists()
    load_tool().main(argv + ['--model', 'prd2_vitl_250m'])
    card = (out_dir / 'README.md').read_text()
    assert '(prd2_vitl_250m)' in card and '## Results' not in card  # the paper has no PRD2 results
    assert 'Converted from the official checkpoint (https://drive.google.com/' in card
    assert 'Weights converted from `prd2_pretrain_250m.pth`' in card and '\nlicense: other\n' in card
    assert "DualEncoderModel.from_pretrained('r2d2lib/prd2_vitl_250m')" in card
    assert json.loads((out_dir / 'config.json').read_text())['converted_from'] == src.name


def test_inference_config_leaves_the_callers_dict_alone(vocab_file):
    a = tiny_model_cfg('r2d2_vitb', vocab_file)
    b = copy.deepcopy(a)
    inference_model_config('r2d2_vitb', a)
    assert a == b
