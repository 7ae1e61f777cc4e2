"""Third-party checkpoint files, as every converter handles them: safe loading, unwrapping, tokenizer."""
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


class PickleRefusedError(ValueError):
    """A checkpoint needs a full unpickle and the caller did not allow it."""


def load_checkpoint_file(path: str | Path, allow_pickle: bool = False) -> Any:
    """A checkpoint file: safetensors, or ``torch.load`` weights-only; a full unpickle only if allowed.

    Unpickling runs code from the file, so it is only done for files the user trusts and says so
    (``allow_pickle=True``, the tools' ``--allow-pickle``); a warning is printed when it happens.
    """
    path = Path(path)
    if path.suffix == '.safetensors':
        from safetensors.torch import load_file
        return load_file(str(path))
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as error:
        if not allow_pickle:
            raise PickleRefusedError(
                f'{path} cannot be loaded weights-only: it holds Python objects beyond tensors and '
                f'plain data.\n  torch says: {str(error).splitlines()[0]}\n'
                '  If you trust this file, rerun with --allow-pickle to unpickle it fully '
                '(unpickling can execute code from the file).') from None
    print(f'warning: {path} holds Python objects beyond tensors; unpickling it fully (--allow-pickle)',
          file=sys.stderr)
    return torch.load(path, map_location='cpu', weights_only=False)


def unwrap_state_dict(checkpoint: Mapping, wrapper_key: str, kind: str) -> dict[str, Tensor]:
    """The state dict of a checkpoint: unwrap ``{wrapper_key: ...}``, strip ``module.`` prefixes.

    ``kind`` names the expected format in the error raised for anything that is not a tensor.
    """
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f'expected a state dict or a checkpoint dict, got {type(checkpoint).__name__}')
    if isinstance(checkpoint.get(wrapper_key), Mapping):
        checkpoint = checkpoint[wrapper_key]
    state_dict = {}
    for name, value in checkpoint.items():
        name = name[len('module.'):] if name.startswith('module.') else name
        if not isinstance(value, Tensor):
            raise TypeError(f'{name!r} is a {type(value).__name__}, not a tensor: not {kind} '
                            f'(top-level keys: {sorted(checkpoint)[:10]})')
        if name in state_dict:
            raise KeyError(f'{name!r} appears both with and without the "module." prefix')
        state_dict[name] = value
    return state_dict


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
