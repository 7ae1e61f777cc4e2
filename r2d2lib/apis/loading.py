"""``load_model``: the one way to load a model, whatever names it.

    load_model('r2d2_vitl_23m')                          # a model-zoo name: its released weights
    load_model('r2d2lib/r2d2_vitl_23m')                  # a Hub repo id (HF_HUB_OFFLINE=1: the cache)
    load_model('work_dirs/demo/model')                   # a folder written by save_pretrained
    load_model('configs/demo/r2d2_tiny_shapes.py', 'work_dirs/demo/epoch_8.pth')   # config + checkpoint

Every branch builds an architecture only (no training objective), checked by the closed schema of
:mod:`r2d2lib.io.config_schema` before anything is built, and loads weights strictly under the trust
policy of :mod:`r2d2lib.io.checkpoint` (a ``.pth`` that needs a full unpickle needs
``allow_pickle=True``). ``DualEncoderModel.from_pretrained``, ``get_model(name, pretrained=...)``,
``R2D2Inferencer``, the tools and the web demo all load through here.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from r2d2lib.io.checkpoint import load_weights
from r2d2lib.io.pretrained import architecture_config, build_architecture, load_pretrained

PathLike = Union[str, os.PathLike]


def _from_config(config: Path, checkpoint: PathLike, allow_pickle: bool) -> nn.Module:
    """The architecture of ``config``'s ``model`` (objective and init-only keys left out), with the
    checkpoint loaded strictly (its ``objective.*`` state dropped)."""
    from mmengine.config import Config
    if not config.is_file():
        raise FileNotFoundError(f'config file {config} does not exist')
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f'checkpoint {checkpoint} does not exist')
    cfg = Config.fromfile(str(config))
    if 'model' not in cfg:
        raise KeyError(f'{config} has no `model` config')
    model_cfg = cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else dict(cfg.model)
    model = build_architecture(architecture_config(model_cfg), f'{config} (model)')
    load_weights(model, checkpoint, allow_pickle=allow_pickle)
    return model


def load_model(source: PathLike, checkpoint: Optional[PathLike] = None, *, allow_pickle: bool = False,
               device: Optional[Union[str, torch.device]] = None,
               dtype: Optional[Union[str, torch.dtype]] = None, revision: Optional[str] = None,
               cache_dir: Optional[PathLike] = None, local_files_only: Optional[bool] = None,
               token: Optional[Union[str, bool]] = None) -> nn.Module:
    """The model ``source`` names, in eval mode, without a training objective.

    Args:
        source: a model-zoo name (:func:`~r2d2lib.apis.list_models`; its ``Weights`` repo), a Hub
            repo id, a folder written by ``save_pretrained``, or a config file (``.py``) with
            ``checkpoint``.
        checkpoint: the training checkpoint (mmengine ``.pth`` or ``.safetensors``) of a config file.
        allow_pickle: allow a checkpoint that needs a full unpickle (it can run code from the file).
        device, dtype: where and in which floating dtype to put the model.
        revision, cache_dir, local_files_only, token: Hub options (``HF_HUB_OFFLINE=1``: the cache only).

    Raises:
        PretrainedConfigError: a config.json that breaks the schema (the key path is named); nothing
            it names was imported or built.
        PickleRefusedError: a checkpoint that needs a full unpickle, without ``allow_pickle``.
        PretrainedLoadError: weights that do not match the architecture key for key.
    """
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError('load_model takes a model-zoo name, a Hub repo id, a folder written by '
                        f'save_pretrained or a config file with a checkpoint; got {type(source).__name__}')
    path = Path(source)
    if checkpoint is not None:
        if path.is_dir() or path.suffix != '.py':
            raise ValueError(f'a checkpoint goes with a config file (.py), got {path}: '
                             'load_model(config, checkpoint)')
        model = _from_config(path, checkpoint, allow_pickle)
    elif path.suffix == '.py':
        raise ValueError(f'{path} is a config file: pass its checkpoint too, load_model(config, checkpoint)')
    elif path.is_file():
        raise ValueError(f'{path} is a file; pass a config with it (load_model(config, checkpoint)) '
                         'or a folder written by save_pretrained')
    else:
        if not path.is_dir():
            from .model_zoo import list_models, released_weights
            if os.fspath(source) in list_models():
                source = released_weights(os.fspath(source))
        return load_pretrained(source, nn.Module, revision=revision, cache_dir=cache_dir,
                               local_files_only=local_files_only, token=token, device=device, dtype=dtype)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model.eval()
