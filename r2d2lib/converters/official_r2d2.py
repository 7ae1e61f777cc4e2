"""Convert the official R2D2 / PRD2 checkpoints into r2d2lib models.

The official release (see ``docs/converters.md``) ships PyTorch pickles holding
``{'model': state_dict, ...}``. Inside each module the parameter names already
follow the official layout, so conversion is a prefix rename:

=============================  =====================================
official                       r2d2lib
=============================  =====================================
``visual_encoder.*``           ``image_encoder.model.*``
``text_encoder.*``             ``text_encoder.model.*``
``text_joint_layer.encoder.*`` ``text_image_encoder.*``
``img_joint_layer.encoder.*``  ``image_text_encoder.*``
``img_joint_proj.*``           ``image_fusion_proj.*``
``itm_head.*``                 ``text_image_itm_head.*``
``itm_head_i.*``               ``image_text_itm_head.*``
``vision_proj.*``              ``vision_proj.*``
``text_proj.*``                ``text_proj.*``
``temp``                       ``temperature.temp``
=============================  =====================================

Tensors the official model never uses are dropped by name (``DROPPED_PREFIXES``);
everything else must match our model key for key and shape for shape, or
:class:`~r2d2lib.io.checkpoint.PretrainedLoadError` lists every offender.
That answers the official loader's fault of silently skipping mismatched tensors.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mmengine.config import Config, ConfigDict
from torch import Tensor, nn

from r2d2lib.io.checkpoint import PretrainedLoadError, check_state_dict_keys, unwrap_state_dict
from r2d2lib.io.config_schema import plain_data
from r2d2lib.io.pretrained import architecture_config

from .building import build_converted, build_model, expected_shapes, match_prefix

#: Repository root: ``ARCH_CONFIGS`` paths are relative to it.
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Our model config of each official architecture (its ``model`` is used, made inference-only
#: by :func:`inference_model_config`). Fine-tuned retrieval and matching checkpoints use the
#: ``r2d2_*`` names.
ARCH_CONFIGS: dict[str, str] = {
    'r2d2_vitb': 'configs/_base_/models/r2d2_vitb.py',
    'r2d2_vitl': 'configs/_base_/models/r2d2_vitl.py',
    'prd2_vitl': 'configs/_base_/models/dual_encoder_vitl.py',
}

#: (official, ours) name prefixes, matched on whole dotted components (``temp`` is a tensor).
_DUAL_ENCODER_RULES: tuple[tuple[str, str], ...] = (
    ('visual_encoder', 'image_encoder.model'),
    ('text_encoder', 'text_encoder.model'),
    ('vision_proj', 'vision_proj'),
    ('text_proj', 'text_proj'),
    ('temp', 'temperature.temp'),
)
_CROSS_ENCODER_RULES: tuple[tuple[str, str], ...] = (
    ('text_joint_layer.encoder', 'text_image_encoder'),
    ('img_joint_layer.encoder', 'image_text_encoder'),
    ('img_joint_proj', 'image_fusion_proj'),
    ('itm_head', 'text_image_itm_head'),
    ('itm_head_i', 'image_text_itm_head'),
)
RENAME_RULES: dict[str, tuple[tuple[str, str], ...]] = {
    'r2d2_vitb': _DUAL_ENCODER_RULES + _CROSS_ENCODER_RULES,
    'r2d2_vitl': _DUAL_ENCODER_RULES + _CROSS_ENCODER_RULES,
    'prd2_vitl': _DUAL_ENCODER_RULES,
}

#: Official tensors the official forward never reads, dropped by name: the ViT's
#: ``post_layernorm`` (the image tokens are taken before it), the BERT pooler (our
#: ``HFBertEncoder`` has none) and the cross encoders' embeddings (they are fed hidden states).
_DUAL_ENCODER_DROPPED: tuple[str, ...] = ('visual_encoder.post_layernorm', 'text_encoder.pooler')
DROPPED_PREFIXES: dict[str, tuple[str, ...]] = {
    'r2d2_vitb': _DUAL_ENCODER_DROPPED + ('text_joint_layer.embeddings', 'img_joint_layer.embeddings'),
    'r2d2_vitl': _DUAL_ENCODER_DROPPED + ('text_joint_layer.embeddings', 'img_joint_layer.embeddings'),
    'prd2_vitl': _DUAL_ENCODER_DROPPED,
}

def _check_arch(arch: str) -> None:
    if arch not in ARCH_CONFIGS:
        raise KeyError(f'unknown arch {arch!r}; expected one of {sorted(ARCH_CONFIGS)}')


def _swap(name: str, rules: tuple[tuple[str, str], ...], inverse: bool = False) -> str | None:
    for official, ours in rules:
        src, dst = (ours, official) if inverse else (official, ours)
        if match_prefix(name, src):
            return dst + name[len(src):]
    return None


def official_to_ours(name: str, arch: str) -> str | None:
    """Our name of an official tensor, or None when no rule covers it."""
    _check_arch(arch)
    return _swap(name, RENAME_RULES[arch])


def ours_to_official(name: str, arch: str) -> str | None:
    """The official name of one of our tensors, or None when no rule covers it."""
    _check_arch(arch)
    return _swap(name, RENAME_RULES[arch], inverse=True)


def is_dropped(name: str, arch: str) -> bool:
    """Whether an official tensor is dropped by name (never used by the official forward)."""
    _check_arch(arch)
    return any(match_prefix(name, prefix) for prefix in DROPPED_PREFIXES[arch])


def unwrap_official_state_dict(checkpoint: Mapping, source: str | Path | None = None) -> dict[str, Tensor]:
    """The state dict of an official checkpoint: unwrap ``{'model': ...}``, strip ``module.``.

    ``source`` (the file) is named in the error raised for anything that is not a tensor."""
    return unwrap_state_dict(checkpoint, 'model', 'an official R2D2 state dict', source)


# ----------------------------------------------------------------- model configs
def load_model_config(config: str | Path | Mapping) -> dict:
    """A model config dict from a config file (its ``model``) or a model config dict, as JSON data
    (a copy; tuples of the config file become lists, which the config.json schema requires)."""
    if isinstance(config, (str, Path)):
        path = Path(config)
        if not path.is_absolute() and not path.exists():
            path = REPO_ROOT / path
        if not path.is_file():
            raise FileNotFoundError(f'model config {str(config)!r} not found (looked in the working '
                                    f'directory and {REPO_ROOT}); pass an existing config file')
        config = Config.fromfile(str(path))['model']
    if isinstance(config, ConfigDict):
        config = config.to_dict()
    return plain_data(config)


def inference_model_config(arch: str, config: str | Path | Mapping | None = None) -> dict:
    """The architecture config of ``arch``: the ``model`` of ``config`` (default ``ARCH_CONFIGS[arch]``)
    without its training objective and without pretrained downloads (the converted checkpoint
    holds every weight; :func:`~r2d2lib.io.pretrained.architecture_config`). The tokenizer
    stays as configured: it is built on first use.
    """
    _check_arch(arch)
    cfg = architecture_config(load_model_config(ARCH_CONFIGS[arch] if config is None else config))
    expected = 'R2D2Model' if arch.startswith('r2d2') else 'DualEncoderModel'
    if cfg.get('type') != expected:
        raise ValueError(f'{arch} converts into a {expected}, but the model config has type '
                         f'{cfg.get("type")!r}')
    return cfg


def build_inference_model(arch: str, config: str | Path | Mapping | None = None) -> nn.Module:
    """Build our (randomly initialised) inference model of ``arch``; nothing is downloaded."""
    return build_model(inference_model_config(arch, config))


# ----------------------------------------------------------------- conversion
def convert_official_state_dict(state_dict: Mapping, arch: str,
                                config: str | Path | Mapping | None = None,
                                source: str | None = None) -> tuple[dict[str, Tensor], list[str]]:
    """Rename an official R2D2 / PRD2 state dict to our names, strictly.

    Args:
        state_dict: the official state dict, or a checkpoint dict whose ``model`` holds it;
            keys may carry DDP's ``module.`` prefix.
        arch: ``'r2d2_vitb'``, ``'r2d2_vitl'`` (also the fine-tuned retrieval and matching
            checkpoints) or ``'prd2_vitl'``.
        config: our model config (file or dict) to check against; default ``ARCH_CONFIGS[arch]``.
        source: where the weights come from, quoted in errors.

    Returns:
        ``(our_state_dict, dropped_keys)``: the renamed tensors (the same tensor objects) and
        the sorted official names dropped because the official model never uses them.

    Raises:
        PretrainedLoadError: listing every official tensor no rule covers or our model lacks,
            every tensor of our model the checkpoint lacks, and every wrong shape.
    """
    _check_arch(arch)
    official = unwrap_official_state_dict(state_dict, source)
    expected = expected_shapes(inference_model_config(arch, config))
    converted, dropped, unexpected, mismatched, seen = {}, [], [], [], set()
    for name, tensor in official.items():
        if is_dropped(name, arch):
            dropped.append(name)
            continue
        ours = official_to_ours(name, arch)
        if ours is None:
            unexpected.append(f'{name} (no rule for {arch})')
            continue
        if ours not in expected:
            unexpected.append(f'{name} (-> {ours}, not in our {arch} model)')
            continue
        seen.add(ours)
        if tensor.shape != expected[ours]:
            mismatched.append((f'{name} (-> {ours})', tensor.shape, expected[ours]))
        else:
            converted[ours] = tensor
    missing = [f'{ours_to_official(name, arch) or "(no official name)"} (-> {name})'
               for name in expected if name not in seen]
    try:
        check_state_dict_keys(missing, unexpected, source or f'official {arch} checkpoint',
                              mismatched=mismatched)
    except PretrainedLoadError as error:
        guess = guess_arch(official)
        if guess is not None and guess != arch:
            raise PretrainedLoadError(f'{error}\nThe checkpoint looks like {guess}, not {arch}: '
                                      f'try arch {guess!r}.') from None
        raise
    return converted, sorted(dropped)


def guess_arch(state_dict: Mapping[str, Tensor]) -> str | None:
    """The arch an official state dict looks like (layout and ViT width), or None."""
    layout = 'r2d2' if any(match_prefix(k, 'text_joint_layer') for k in state_dict) else 'prd2'
    cls = state_dict.get('visual_encoder.embeddings.class_embedding')
    width = {768: 'vitb', 1024: 'vitl'}.get(cls.shape[-1]) if cls is not None and cls.dim() else None
    guess = f'{layout}_{width}'
    return guess if width is not None and guess in ARCH_CONFIGS else None


def build_converted_model(arch: str, state_dict: Mapping,
                          config: str | Path | Mapping | None = None) -> nn.Module:
    """Our inference model of ``arch`` holding the weights of an official checkpoint (eval mode).

    ``config`` overrides ``ARCH_CONFIGS[arch]`` (a file or a model config dict). The config's
    initial temperature is the checkpoint's (:func:`~r2d2lib.converters.building.build_converted`).
    """
    converted, _ = convert_official_state_dict(state_dict, arch, config)
    return build_converted(inference_model_config(arch, config), converted)
