"""Import Chinese-CLIP (Yang et al., 2022; OFA-Sys/Chinese-CLIP) dual towers into a DualEncoderModel.

Two source formats hold the same model (a CLIP ViT and a RoBERTa-wwm BERT):

- ``'hf'``: a transformers ``ChineseCLIPModel`` state dict (``vision_model.*``, ``text_model.*``,
  ``visual_projection.weight``, ``text_projection.weight``, ``logit_scale``);
- ``'original'``: a checkpoint of the Chinese-CLIP repository (``cn_clip/clip/model.py``):
  ``{'state_dict': ...}`` with DDP's ``module.`` prefixes, an OpenAI-style ViT under ``visual.*``
  (fused ``attn.in_proj_weight`` / ``in_proj_bias``, ``visual.proj`` and ``text_projection`` as
  ``[width, embed]`` matrices), the BERT under ``bert.*`` and ``logit_scale``.

An original state dict is first brought to the transformers names (as transformers'
``convert_chinese_clip_original_pytorch_to_hf.py`` does: q/k/v split from ``in_proj``, projection
matrices transposed), then renamed to ours:

=================================  ===================================================================
transformers ``ChineseCLIPModel``  r2d2lib ``DualEncoderModel``
=================================  ===================================================================
``vision_model.*``                 ``image_encoder.model.*`` (``HFCLIPVisionEncoder``, same layout)
``text_model.*``                   ``text_encoder.model.*`` (``HFBertEncoder``, ``BertModel`` layout)
``visual_projection.weight``       ``vision_proj.weight`` (``ProjectionHead(bias=False)``)
``text_projection.weight``         ``text_proj.weight`` (``ProjectionHead(bias=False)``)
``logit_scale``                    ``temperature.logit_scale`` (``LogitScale``), or
                                   ``temperature.temp = exp(-logit_scale)`` (``Temperature``)
=================================  ===================================================================

Chinese-CLIP's image feature is ``ln_post(CLS) @ proj``: the target model's image encoder must
have ``cls_post_layernorm=True`` (so ``vision_model.post_layernorm`` is a tensor of our model) and
both projections ``bias=False``; ``configs/chinese_clip/chinese_clip_vitb16.py`` is such a model.
The text feature is the [CLS] hidden state ``@ text_projection``, which DualEncoderModel computes.

Dropped by name: the BERT pooler (``text_model.pooler.*``, ``bert.pooler.*``; Chinese-CLIP never
uses it and our ``HFBertEncoder`` has none) and the index buffers older transformers saved
(``*.embeddings.position_ids``, ``text_model.embeddings.token_type_ids``). Anything else that does
not match our model key for key and shape for shape raises
:class:`~r2d2lib.models.encoders.base.PretrainedLoadError` listing every offender.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from r2d2lib.io.checkpoint import check_state_dict_keys, unwrap_state_dict
from r2d2lib.io.pretrained import architecture_config

from .building import TEMPERATURE_KEYS, build_converted, expected_shapes, match_prefix
from .official_r2d2 import load_model_config

#: Our model config for Chinese-CLIP ViT-B/16 (its ``model`` is used).
DEFAULT_CONFIG = 'configs/chinese_clip/chinese_clip_vitb16.py'
SOURCE_FORMATS = ('hf', 'original')

#: (transformers, ours) name prefixes, matched on whole dotted components.
HF_RENAME_RULES: tuple[tuple[str, str], ...] = (
    ('vision_model', 'image_encoder.model'),
    ('text_model', 'text_encoder.model'),
    ('visual_projection', 'vision_proj'),
    ('text_projection', 'text_proj'),
)
#: transformers tensors dropped by name (see the module doc).
HF_DROPPED: tuple[str, ...] = (
    r'text_model\.pooler\..+',
    r'(vision|text)_model\.embeddings\.position_ids',
    r'text_model\.embeddings\.token_type_ids',
)
#: original tensors dropped by name (``cn_clip``'s BertModel has no pooler, but a fork's may).
ORIGINAL_DROPPED: tuple[str, ...] = (r'bert\.pooler\..+', r'bert\.embeddings\.position_ids')

#: original (cn_clip) -> transformers names of the vision tower, outside the attention.
_ORIGINAL_VISION: dict[str, str] = {
    'visual.conv1.weight': 'vision_model.embeddings.patch_embedding.weight',
    'visual.class_embedding': 'vision_model.embeddings.class_embedding',
    'visual.positional_embedding': 'vision_model.embeddings.position_embedding.weight',
    'visual.ln_pre.weight': 'vision_model.pre_layrnorm.weight',
    'visual.ln_pre.bias': 'vision_model.pre_layrnorm.bias',
    'visual.ln_post.weight': 'vision_model.post_layernorm.weight',
    'visual.ln_post.bias': 'vision_model.post_layernorm.bias',
}
_ORIGINAL_BLOCK = re.compile(r'visual\.transformer\.resblocks\.(\d+)\.(.+)')
_ORIGINAL_BLOCK_PARTS: dict[str, str] = {
    'ln_1': 'layer_norm1', 'ln_2': 'layer_norm2', 'mlp.c_fc': 'mlp.fc1', 'mlp.c_proj': 'mlp.fc2',
    'attn.out_proj': 'self_attn.out_proj',
}


def _dropped(name: str, patterns: tuple[str, ...]) -> bool:
    return any(re.fullmatch(pattern, name) for pattern in patterns)


def is_dropped(name: str, source_format: str) -> bool:
    """Whether a tensor of ``source_format`` (``'hf'`` / ``'original'``) is dropped by name."""
    return _dropped(name, HF_DROPPED if source_format == 'hf' else ORIGINAL_DROPPED)


def unwrap_chinese_clip_state_dict(checkpoint: Mapping,
                                   source: str | Path | None = None) -> dict[str, Tensor]:
    """The state dict of a checkpoint: unwrap ``{'state_dict': ...}``, strip ``module.`` prefixes.

    ``source`` (the file) is named in the error raised for anything that is not a tensor."""
    return unwrap_state_dict(checkpoint, 'state_dict', 'a Chinese-CLIP state dict', source)


def detect_format(state_dict: Mapping[str, Tensor]) -> str:
    """``'original'`` (``visual.*`` / ``bert.*``) or ``'hf'`` (``vision_model.*`` / ``text_model.*``)."""
    names = list(state_dict)
    if any(match_prefix(n, 'visual') or match_prefix(n, 'bert') for n in names):
        return 'original'
    if any(match_prefix(n, 'vision_model') or match_prefix(n, 'text_model') for n in names):
        return 'hf'
    raise ValueError('not a Chinese-CLIP state dict: no visual.* / bert.* (original) and no '
                     f'vision_model.* / text_model.* (transformers) keys; first keys: {names[:10]}')


# ----------------------------------------------------------------- original -> transformers names
def original_to_hf(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, tuple[Tensor, str]], list[str],
                                                              list[str]]:
    """Bring an original (cn_clip) state dict to transformers' ``ChineseCLIPModel`` names.

    Returns ``(tensors, dropped, unmatched)``: ``tensors`` maps each transformers name to
    ``(tensor, original name)``; ``dropped`` the original names dropped by name; ``unmatched`` the
    original names no rule covers (with the reason).
    """
    tensors: dict[str, tuple[Tensor, str]] = {}
    dropped, unmatched = [], []
    for name, tensor in state_dict.items():
        if _dropped(name, ORIGINAL_DROPPED):
            dropped.append(name)
        elif name in _ORIGINAL_VISION:
            tensors[_ORIGINAL_VISION[name]] = (tensor, name)
        elif name == 'visual.proj':
            tensors['visual_projection.weight'] = (tensor.t(), name)
        elif name == 'text_projection':
            tensors['text_projection.weight'] = (tensor.t(), name)
        elif name == 'logit_scale':
            tensors['logit_scale'] = (tensor, name)
        elif match_prefix(name, 'bert'):
            tensors['text_model' + name[len('bert'):]] = (tensor, name)
        elif (block := _ORIGINAL_BLOCK.fullmatch(name)) is not None:
            index, part = block.groups()
            prefix = f'vision_model.encoder.layers.{index}'
            if part in ('attn.in_proj_weight', 'attn.in_proj_bias'):
                kind = part.rsplit('_', 1)[1]  # weight / bias
                if tensor.shape[0] % 3:
                    unmatched.append(f'{name} (fused q/k/v of {tuple(tensor.shape)}: first dimension not '
                                     'divisible by 3)')
                    continue
                for proj, chunk in zip(('q_proj', 'k_proj', 'v_proj'), tensor.chunk(3, dim=0)):
                    tensors[f'{prefix}.self_attn.{proj}.{kind}'] = (chunk, name)
            else:
                module, _, leaf = part.rpartition('.')
                if module not in _ORIGINAL_BLOCK_PARTS:
                    unmatched.append(f'{name} (no rule for the original format)')
                    continue
                tensors[f'{prefix}.{_ORIGINAL_BLOCK_PARTS[module]}.{leaf}'] = (tensor, name)
        else:
            unmatched.append(f'{name} (no rule for the original format)')
    return tensors, dropped, unmatched


def hf_to_ours(name: str, logit_target: str | None = None) -> str | None:
    """Our name of a transformers ``ChineseCLIPModel`` tensor, or None when no rule covers it.

    ``logit_scale`` goes to ``logit_target`` (``temperature.logit_scale`` or ``.temp``).
    """
    if name == 'logit_scale':
        return logit_target
    for hf, ours in HF_RENAME_RULES:
        if match_prefix(name, hf):
            return ours + name[len(hf):]
    return None


# ----------------------------------------------------------------- our model
def inference_model_config(config: str | Path | Mapping | None = None) -> dict:
    """The architecture config of :data:`DEFAULT_CONFIG`'s (or ``config``'s) ``model``: no objective, no
    pretrained downloads."""
    cfg = architecture_config(load_model_config(DEFAULT_CONFIG if config is None else config))
    if cfg.get('type') != 'DualEncoderModel':
        raise ValueError(f'Chinese-CLIP converts into a DualEncoderModel, but the model config has type '
                         f'{cfg.get("type")!r}')
    return cfg


def model_config_from_hf(hf_config: Any, config: str | Path | Mapping | None = None) -> dict:
    """Our inference model config with the tower sizes of a transformers ``ChineseCLIPConfig``.

    ``hf_config``: a ``ChineseCLIPConfig`` or its dict; ``config``: the model config to start from
    (default :data:`DEFAULT_CONFIG`). Everything shapes cannot reveal (activations, LayerNorm eps,
    head counts) is taken from ``hf_config`` too, so the import is exact for any Chinese-CLIP ViT.
    """
    if not isinstance(hf_config, Mapping):
        hf_config = hf_config.to_dict()
    vision, text = hf_config['vision_config'], hf_config['text_config']
    cfg = inference_model_config(config)
    vision_keys = ('hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads',
                   'image_size', 'patch_size', 'hidden_act', 'layer_norm_eps')
    text_keys = ('vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads',
                 'intermediate_size', 'max_position_embeddings', 'type_vocab_size', 'hidden_act',
                 'layer_norm_eps')
    cfg['image_encoder'] = dict(cfg['image_encoder'], cls_post_layernorm=True, config={
        **(cfg['image_encoder'].get('config') or {}), **{k: vision[k] for k in vision_keys if k in vision}})
    cfg['text_encoder'] = dict(cfg['text_encoder'], config={
        **(cfg['text_encoder'].get('config') or {}), **{k: text[k] for k in text_keys if k in text}})
    cfg['embed_dim'] = hf_config['projection_dim']
    cfg['projection_head'] = dict(cfg.get('projection_head') or dict(type='ProjectionHead'), bias=False)
    dp_cfg = dict(cfg.get('data_preprocessor') or dict(type='ImageTextDataPreprocessor'))
    dp_cfg['image_size'] = cfg['image_encoder']['config']['image_size']
    cfg['data_preprocessor'] = dp_cfg
    return cfg


def _logit_target(expected: Mapping[str, Any]) -> str | None:
    return next((name for name in TEMPERATURE_KEYS if name in expected), None)


# ----------------------------------------------------------------- conversion
def convert_chinese_clip(state_dict: Mapping, source_format: str = 'auto',
                         config: str | Path | Mapping | None = None,
                         source: str | None = None) -> tuple[dict[str, Tensor], list[str]]:
    """Rename a Chinese-CLIP state dict to our DualEncoderModel's names, strictly.

    Args:
        state_dict: a transformers ``ChineseCLIPModel`` state dict (``'hf'``) or an original
            Chinese-CLIP checkpoint (``'original'``); ``{'state_dict': ...}`` is unwrapped and
            ``module.`` prefixes are stripped.
        source_format: ``'hf'``, ``'original'`` or ``'auto'`` (:func:`detect_format`).
        config: our model config (file or dict) to check against; default :data:`DEFAULT_CONFIG`.
            Its image encoder needs ``cls_post_layernorm=True`` and its projections ``bias=False``.
        source: where the weights come from, quoted in errors.

    Returns:
        ``(our_state_dict, dropped_keys)``: the converted tensors and the sorted source names
        dropped by name. ``logit_scale`` becomes ``temperature.logit_scale`` (LogitScale)
        or ``temperature.temp = exp(-logit_scale)`` (Temperature), whichever our model has.

    Raises:
        PretrainedLoadError: listing every source tensor no rule covers or our model lacks, every
            tensor of our model the checkpoint lacks, and every wrong shape.
    """
    state_dict = unwrap_chinese_clip_state_dict(state_dict, source)
    if source_format == 'auto':
        source_format = detect_format(state_dict)
    if source_format not in SOURCE_FORMATS:
        raise ValueError(f'source_format must be one of {SOURCE_FORMATS} or "auto", got {source_format!r}')
    if source_format == 'original':
        tensors, dropped, unexpected = original_to_hf(state_dict)
    else:
        tensors, dropped, unexpected = {}, [], []
        for name, tensor in state_dict.items():
            if _dropped(name, HF_DROPPED):
                dropped.append(name)
            else:
                tensors[name] = (tensor, name)
    expected = expected_shapes(inference_model_config(config))
    logit_target = _logit_target(expected)
    converted, mismatched, origin = {}, [], {}
    for hf_name, (tensor, src_name) in tensors.items():
        label = src_name if src_name == hf_name else f'{src_name} (as {hf_name})'
        ours = hf_to_ours(hf_name, logit_target)
        if ours is None:
            reason = ('our model has no logit scale or temperature' if hf_name == 'logit_scale'
                      else 'no rule')
            unexpected.append(f'{label} ({reason})')
            continue
        if ours not in expected:
            hint = (', set cls_post_layernorm=True on the image encoder' if 'post_layernorm' in ours else '')
            unexpected.append(f'{label} (-> {ours}, not in our model{hint})')
            continue
        origin[ours] = src_name
        if ours == 'temperature.temp':
            tensor = torch.exp(-tensor.detach().float()).to(tensor.dtype)
        if tensor.shape != expected[ours]:
            mismatched.append((f'{label} (-> {ours})', tensor.shape, expected[ours]))
        else:
            converted[ours] = tensor.contiguous()
    missing = [f'{name}{" (set bias=False in projection_head)" if name.endswith("proj.bias") else ""}'
               for name in expected if name not in origin]
    check_state_dict_keys(missing, unexpected, source or f'Chinese-CLIP ({source_format}) state dict',
                          mismatched=mismatched)
    return converted, sorted(dropped)


def build_chinese_clip_model(state_dict: Mapping, source_format: str = 'auto',
                             config: str | Path | Mapping | None = None) -> nn.Module:
    """Our DualEncoderModel holding the weights of a Chinese-CLIP checkpoint (eval mode).

    The config's initial temperature is the checkpoint's
    (:func:`~r2d2lib.converters.building.build_converted`).
    """
    converted, _ = convert_chinese_clip(state_dict, source_format, config)
    return build_converted(inference_model_config(config), converted)
