"""Our model from converted weights, as every converter and its tool builds, loads, reports and saves it."""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

#: Where a converted model's contrastive loss keeps its temperature, as ``logit_scale`` (InfoNCE) or
#: ``temp`` (GCPR); the first one the model has is used.
TEMPERATURE_KEYS = ('contrastive_loss.logit_scale', 'contrastive_loss.temp')


#: Model config arguments that only training uses (the momentum teacher, queue, FgD, loss weights).
TRAINING_ONLY_ARGS = ('teacher', 'queue', 'fgd_loss', 'loss_weights')
#: Config keys that only initialisation reads (pretrained weights); a loaded model has its weights.
INIT_ONLY_KEYS = ('pretrained', 'init_cfg')


def clear_init_only(cfg: Any) -> Any:
    """Set ``pretrained`` and ``init_cfg`` to None at every level (in place; returned), except inside
    an encoder's transformers ``config`` dict, so that building the model downloads nothing."""
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            if key in INIT_ONLY_KEYS:
                cfg[key] = None
            elif key != 'config':
                clear_init_only(value)
    elif isinstance(cfg, list):
        for value in cfg:
            clear_init_only(value)
    return cfg


def inference_config(model_cfg: Mapping) -> dict:
    """A copy of a model config without training-only parts (:data:`TRAINING_ONLY_ARGS` set to None)
    or init-only keys (:func:`clear_init_only`). A contrastive loss that needs the queue must still
    be replaced by the caller."""
    cfg = copy.deepcopy(dict(model_cfg))
    cfg.update({key: None for key in TRAINING_ONLY_ARGS})
    return clear_init_only(cfg)


def match_prefix(name: str, prefix: str) -> bool:
    """``name`` is ``prefix`` or starts with ``prefix`` on a dotted-component boundary."""
    return name == prefix or name.startswith(prefix + '.')


def build_model(model_cfg: Mapping) -> nn.Module:
    """Our (randomly initialised) model of a resolved model config; nothing is downloaded."""
    import r2d2lib  # noqa: F401  (registers every component)
    from r2d2lib.registry import MODELS
    return MODELS.build(dict(model_cfg))


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
    cfg['contrastive_loss'] = dict(cfg['contrastive_loss'],
                                   temperature=config_temperature(temperature_of(converted)))
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


def converted_card(src: str | Path, zoo_name: str | None = None,
                   default: dict | None = None) -> dict[str, Any]:
    """The model card metadata of a converted model: the model-zoo entry ``zoo_name`` (the tools'
    ``--model``) if given, else ``default``; with ``converted_from`` (the source file's name), which
    ``save_pretrained`` records in config.json and ``tools/publish_to_hub.py`` reads back.

    Raises ``KeyError`` (with close names) for a name that is not a model-zoo model.
    """
    if zoo_name is not None:
        from r2d2lib.apis.model_zoo import model_card_metadata
        card = model_card_metadata(zoo_name, official=True)
    else:
        card = dict(default or {})
    return {**card, 'converted_from': Path(src).name}


def save_converted(model: nn.Module, out_dir: str | Path, card: dict) -> Path:
    """``save_pretrained`` the converted model with its card; prints what was written."""
    from r2d2lib.apis.hub import save_pretrained
    out_dir = save_pretrained(model, out_dir, model_card=card)
    print(f'wrote {out_dir}: {", ".join(sorted(p.name for p in out_dir.iterdir()))}')
    return out_dir
