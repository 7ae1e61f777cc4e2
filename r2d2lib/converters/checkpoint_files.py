"""Third-party and local checkpoint files, as every converter and ``load_local_checkpoint`` handle them:
safe loading, unwrapping, the tokenizer."""
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from r2d2lib.models.encoders.base import PretrainedLoadError


class PickleRefusedError(ValueError):
    """A checkpoint needs a full unpickle and the caller did not allow it."""


class CheckpointFileError(PretrainedLoadError):
    """A checkpoint file that cannot be read (truncated, corrupt, not a checkpoint); names the file."""


def read_safetensors(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a safetensors file (on CPU); a missing or unreadable file is named in the error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'{path} is missing: the folder has no weights')
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointFileError(f'{path} is not a readable safetensors file (truncated or corrupt?): '
                                  f'{error}') from error


def _torch_load(path: Path, weights_only: bool) -> Any:
    """``torch.load`` on CPU; weights-only with the plain data types of mmengine checkpoints allowed."""
    try:
        if not weights_only:
            return torch.load(path, map_location='cpu', weights_only=False)
        from r2d2lib.engine.checkpoint import load_weights_only
        return load_weights_only(path, map_location='cpu')
    except pickle.UnpicklingError as error:
        if weights_only:  # more than tensors and plain data: the caller decides
            raise
        raise CheckpointFileError(f'{path} cannot be unpickled (truncated or corrupt?): {error}') from error
    except (OSError, RuntimeError, EOFError, ValueError) as error:
        raise CheckpointFileError(f'{path} is not a readable PyTorch checkpoint (truncated or corrupt?): '
                                  f'{error}') from error


def load_checkpoint_file(path: str | Path, allow_pickle: bool = False) -> Any:
    """A checkpoint file: safetensors, or ``torch.load`` weights-only; a full unpickle only if allowed.

    Weights-only admits tensors, plain data and the data types of mmengine training checkpoints
    (``r2d2lib.engine.checkpoint.SAFE_GLOBALS``): such a file needs no opt-in. Unpickling anything
    else runs code from the file, so it is only done for files the user trusts and says so
    (``allow_pickle=True``, the tools' ``--allow-pickle``); a warning is printed when it happens.

    Raises:
        FileNotFoundError: no such file.
        PickleRefusedError: the file needs a full unpickle and ``allow_pickle`` is False.
        CheckpointFileError: the file cannot be read (truncated or corrupt); names the file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    if path.suffix == '.safetensors':
        return read_safetensors(path)
    try:
        return _torch_load(path, weights_only=True)
    except pickle.UnpicklingError as error:
        if not allow_pickle:
            lines = str(error).splitlines()
            reason = next((line.strip() for line in lines if 'WeightsUnpickler error' in line), lines[0])
            raise PickleRefusedError(
                f'{path} cannot be loaded weights-only: it holds Python objects beyond tensors and '
                f'plain data.\n  torch says: {reason}\n'
                '  If you trust this file, opt in to unpickling it fully with --allow-pickle '
                '(allow_pickle=True in Python); unpickling can execute code from the file.') from None
    print(f'warning: {path} holds Python objects beyond tensors; unpickling it fully (--allow-pickle)',
          file=sys.stderr)
    return _torch_load(path, weights_only=False)


def unwrap_state_dict(checkpoint: Mapping, wrapper_key: str, kind: str,
                      source: str | Path | None = None) -> dict[str, Tensor]:
    """The state dict of a checkpoint: unwrap ``{wrapper_key: ...}``, strip ``module.`` prefixes.

    ``kind`` names the expected format and ``source`` (a file) where the checkpoint comes from, in
    the error raised for anything that is not a tensor.
    """
    where = f'{source}: ' if source is not None else ''
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f'{where}expected a state dict or a checkpoint dict, got {type(checkpoint).__name__}')
    if isinstance(checkpoint.get(wrapper_key), Mapping):
        checkpoint = checkpoint[wrapper_key]
    state_dict = {}
    for name, value in checkpoint.items():
        name = name[len('module.'):] if name.startswith('module.') else name
        if not isinstance(value, Tensor):
            raise TypeError(f'{where}{name!r} is a {type(value).__name__}, not a tensor: not {kind} '
                            f'(top-level keys: {sorted(checkpoint)[:10]})')
        if name in state_dict:
            raise KeyError(f'{where}{name!r} appears both with and without the "module." prefix')
        state_dict[name] = value
    return state_dict


def set_tokenizer(model_cfg: dict, tokenizer: str | Path | None) -> dict:
    """Configure the tools' ``--tokenizer`` in ``model_cfg`` (in place; returned): a WordPiece
    ``vocab.txt`` file, or a tokenizer folder or Hub id. ``None`` keeps the config's."""
    if tokenizer is not None:
        key = 'vocab_file' if Path(tokenizer).is_file() else 'name_or_path'
        dp_cfg = model_cfg.get('data_preprocessor') or dict(type='ImageTextDataPreprocessor')
        model_cfg['data_preprocessor'] = dict(dp_cfg, tokenizer={key: str(tokenizer)})
    return model_cfg


def check_tokenizer(model_cfg: dict, vocabulary: str) -> None:
    """Build the configured tokenizer now (a converted model is saved with its files), or raise a hint.

    ``vocabulary`` names the tokenizer the user should pass with ``--tokenizer``.
    """
    from r2d2lib.registry import MODELS
    preprocessor = MODELS.build(model_cfg.get('data_preprocessor') or dict(type='ImageTextDataPreprocessor'))
    try:
        preprocessor.tokenizer  # noqa: B018 (built on first access)
    except OSError as error:
        raise OSError(f'the tokenizer {preprocessor.tokenizer_cfg} cannot be built: {error}\n'
                      '  The converted model is saved with its tokenizer files: pass --tokenizer with a '
                      f'local tokenizer folder or vocab.txt ({vocabulary}).') from None
