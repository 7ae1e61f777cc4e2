"""Our model from converted weights, as every converter and its tool builds, loads, reports and saves it."""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

import r2d2lib.models  # noqa: F401  (registers every architecture component)
from r2d2lib.io.pretrained import architecture_config, build_architecture, save_pretrained

#: Where a converted model keeps its temperature: ``logit_scale`` (CLIP) or ``temp`` (R2D2) of the model's
#: ``temperature``; the first one the model has is used.
TEMPERATURE_KEYS = ('temperature.logit_scale', 'temperature.temp')


def match_prefix(name: str, prefix: str) -> bool:
    """``name`` is ``prefix`` or starts with ``prefix`` on a dotted-component boundary."""
    return name == prefix or name.startswith(prefix + '.')


def build_model(model_cfg: Mapping) -> nn.Module:
    """Our (randomly initialised) architecture of a model config (no objective); nothing is downloaded.

    The config is checked like a config.json (:func:`~r2d2lib.io.pretrained.build_architecture`).
    """
    return build_architecture(architecture_config(model_cfg), 'the converter\'s model config')


def expected_shapes(model_cfg: Mapping) -> dict[str, torch.Size]:
    """Name -> shape of every tensor of the model's state dict (built on the meta device)."""
    with torch.device('meta'):
        model = build_model(model_cfg)
    return {name: tensor.shape for name, tensor in model.state_dict().items()}


def config_temperature(value: float) -> float:
    """A temperature as written into a config: 6 significant digits (the tensor keeps the exact value)."""
    return float(f'{float(value):.6g}')


def temperature_of(converted: Mapping[str, Tensor]) -> float:
    """The temperature tau converted weights hold: ``exp(-logit_scale)`` or ``temp``."""
    if TEMPERATURE_KEYS[0] in converted:
        return math.exp(-float(converted[TEMPERATURE_KEYS[0]]))
    return float(converted[TEMPERATURE_KEYS[1]])


def build_converted(model_cfg: Mapping, converted: Mapping[str, Tensor]) -> nn.Module:
    """The model of ``model_cfg`` holding ``converted`` (loaded strictly), in eval mode.

    The config's initial temperature is set to the weights' (:func:`config_temperature`), so that
    the config the model records (and ``save_pretrained`` writes) says what it holds.
    """
    cfg = dict(model_cfg)
    cfg['temperature'] = dict(cfg.get('temperature') or dict(type='Temperature'),
                              init=config_temperature(temperature_of(converted)))
    model = build_model(cfg)
    model.load_state_dict(converted, strict=True)
    return model.eval()


# ----------------------------------------------------------------- the tools' output
def print_summary(header: str, converted: Mapping[str, Tensor], dropped: list[str], model: nn.Module,
                  dropped_reason: str = 'unused') -> None:
    """What a converter tool did: tensors mapped, dropped (listed), temperature, parameters."""
    tau = temperature_of(converted)
    print(f'{header}:')
    print(f'  tensors mapped: {len(converted)}')
    print(f'  dropped by name ({dropped_reason}): {len(dropped)}')
    for name in dropped:
        print(f'    {name}')
    print(f'  temperature: {tau:.6g} (scale 1/tau = {1 / tau:.4g})')
    print(f'  parameters: {sum(p.numel() for p in model.parameters()):,} ({type(model).__name__})')


def save_converted(model: nn.Module, out_dir: str | Path, card: dict) -> Path:
    """``save_pretrained`` the converted model with its card; prints what was written."""
    out_dir = save_pretrained(model, out_dir, model_card=card)
    print(f'wrote {out_dir}: {", ".join(sorted(p.name for p in out_dir.iterdir()))}')
    return out_dir
