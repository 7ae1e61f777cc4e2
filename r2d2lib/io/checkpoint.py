"""Every checkpoint r2d2lib reads goes through here: one trust policy, strict key checks.

The policy:

- ``.safetensors`` files hold tensors only: always safe.
- ``.pth`` files are read with ``torch.load(weights_only=True)`` with the plain data types of
  mmengine training checkpoints allowed (:data:`SAFE_GLOBALS`: the message hub's
  ``HistoryBuffer``, numpy arrays, scalars and dtypes, and ``getattr`` narrowed to the four
  statistics methods of a HistoryBuffer, :func:`history_buffer_method`). That covers converted
  weights and r2d2lib's own training checkpoints: resuming needs no opt-in.
- A file that needs more (a full unpickle, which can run code from the file) is refused with
  :class:`PickleRefusedError` naming the opt-in, unless the caller passes ``allow_pickle=True``
  (the tools' ``--allow-pickle``). ``tools/train.py --resume`` of the run's own work dir is the
  one implicit opt-in: those files were written by this run.

Nothing is patched into mmengine: :class:`~r2d2lib.engine.StrictRunner` calls
:func:`load_checkpoint_file` explicitly, and mmengine's own loader keeps torch's default
(weights-only on torch >= 2.6).

Loading into a model is strict (:func:`load_state_dict_strict`): a missing, unexpected or
wrong-shaped key raises :class:`PretrainedLoadError` listing every offender and the source.

This module sits below ``r2d2lib.models`` (whose encoders load their pretrained weights
strictly with it) and imports nothing of r2d2lib.
"""
from __future__ import annotations

import pickle
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

_MAX_LISTED = 30  # keys listed per category in an error message


class PretrainedLoadError(RuntimeError):
    """Weights that do not match a model key for key and shape for shape (or cannot be read)."""


class PickleRefusedError(ValueError):
    """A checkpoint needs a full unpickle and the caller did not allow it."""


class CheckpointFileError(PretrainedLoadError):
    """A checkpoint file that cannot be read (truncated, corrupt, not a checkpoint); names the file."""


#: The statistics methods of mmengine's ``HistoryBuffer``, which its pickled state refers to as
#: ``getattr(<the buffer>, name)``.
HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def history_buffer_method(obj: Any, name: str) -> Any:
    """What ``getattr`` may do while a checkpoint is unpickled: fetch a HistoryBuffer statistics method.

    mmengine's message hub pickles ``HistoryBuffer._statistics_methods`` as ``getattr(HistoryBuffer,
    'min')``. A general ``getattr`` would let a file reach any attribute of any object
    (``__globals__``, ``__builtins__``...) and call it; this one answers only those four names on a
    HistoryBuffer, and refuses the rest as a weights-only load refuses any other global.
    """
    from mmengine.logging import HistoryBuffer
    if (obj is HistoryBuffer or isinstance(obj, HistoryBuffer)) and name in HISTORY_BUFFER_METHODS:
        return getattr(obj, name)
    raise pickle.UnpicklingError(f'WeightsUnpickler error: getattr({type(obj).__name__}, {name!r}) is not '
                                 'allowed (only the statistics methods of a HistoryBuffer are)')


def _safe_globals() -> list:
    """The classes and functions mmengine training checkpoints pickle besides tensors."""
    from mmengine.logging import HistoryBuffer
    numpy = [np.ndarray, np.dtype, np._core.multiarray._reconstruct, np._core.multiarray.scalar]
    return ([HistoryBuffer] + numpy
            + [getattr(np.dtypes, name) for name in np.dtypes.__all__]
            + [(history_buffer_method, name) for name in ('__builtin__.getattr', 'builtins.getattr')])


SAFE_GLOBALS = _safe_globals()


# ----------------------------------------------------------------------------------- strict keys
def _listing(kind: str, keys: Sequence[str]) -> str:
    """One line of an error message: the category, its count and (the first) keys."""
    shown = ', '.join(keys[:_MAX_LISTED])
    more = f', ... and {len(keys) - _MAX_LISTED} more' if len(keys) > _MAX_LISTED else ''
    return f'  {kind} ({len(keys)}): {shown}{more}'


def check_state_dict_keys(missing: Iterable[str], unexpected: Iterable[str], source: str,
                          ignore_prefixes: Sequence[str] = (),
                          mismatched: Iterable[Any] = ()) -> list[str]:
    """Fail loudly unless a checkpoint matched exactly, up to keys dropped by name.

    Args:
        missing: keys the model has but the checkpoint lacks.
        unexpected: keys the checkpoint has but the model lacks.
        source: where the weights come from (path or hub id), quoted in the error.
        ignore_prefixes: keys starting with one of these (``'post_layernorm.'``,
            ``'objective.'``) are dropped deliberately, missing or unexpected.
        mismatched: wrong-shaped keys, as names or ``(name, ckpt_shape, model_shape)``.

    Returns:
        The sorted dropped (ignored) keys.

    Raises:
        PretrainedLoadError: listing every offending key and the source.
    """
    prefixes = tuple(ignore_prefixes)
    missing, unexpected = sorted(set(missing)), sorted(set(unexpected))
    dropped = sorted(k for k in set(missing) | set(unexpected) if k.startswith(prefixes))
    missing = [k for k in missing if not k.startswith(prefixes)]
    unexpected = [k for k in unexpected if not k.startswith(prefixes)]
    wrong = sorted(m if isinstance(m, str) else
                   f'{m[0]} (checkpoint {tuple(m[1])} vs model {tuple(m[2])})'
                   for m in mismatched)
    if missing or unexpected or wrong:
        lines = [f'Strict loading of pretrained weights from {source!r} failed:']
        for kind, keys in (('missing keys', missing), ('unexpected keys', unexpected),
                           ('shape mismatches', wrong)):
            if keys:
                lines.append(_listing(kind, keys))
        raise PretrainedLoadError('\n'.join(lines))
    return dropped


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, Tensor],
                           source: str, ignore_prefixes: Sequence[str] = ()) -> list[str]:
    """Copy ``state_dict`` into ``module`` after :func:`check_state_dict_keys` passed.

    Keys of ``state_dict`` starting with one of ``ignore_prefixes`` are dropped (returned).
    Shapes are checked before copying, so a mismatch is reported with the other problems.
    """
    prefixes = tuple(ignore_prefixes)
    own = module.state_dict()
    kept = {k: v for k, v in state_dict.items() if not k.startswith(prefixes)}
    mismatched = [(k, v.shape, own[k].shape) for k, v in kept.items()
                  if k in own and v.shape != own[k].shape]
    check_state_dict_keys(own.keys() - kept.keys(), kept.keys() - own.keys(), source,
                          mismatched=mismatched)
    module.load_state_dict(kept, strict=True)
    return sorted(state_dict.keys() - kept.keys())


# ----------------------------------------------------------------------------------- files
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


def _torch_load(path: Path, weights_only: bool, map_location: Any = 'cpu') -> Any:
    """``torch.load``; weights-only with :data:`SAFE_GLOBALS` allowed. Unreadable files are named."""
    try:
        if not weights_only:
            return torch.load(path, map_location=map_location, weights_only=False)
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if weights_only:  # beyond tensors and plain data: the caller decides
            raise
        raise CheckpointFileError(f'{path} cannot be unpickled (truncated or corrupt?): {error}') from error
    except (OSError, RuntimeError, EOFError, ValueError) as error:
        raise CheckpointFileError(f'{path} is not a readable PyTorch checkpoint (truncated or corrupt?): '
                                  f'{error}') from error


def load_checkpoint_file(path: str | Path, allow_pickle: bool = False, map_location: Any = 'cpu') -> Any:
    """A checkpoint file: safetensors, or ``torch.load`` weights-only; a full unpickle only if allowed.

    Raises:
        FileNotFoundError: no such file.
        PickleRefusedError: the file needs a full unpickle and ``allow_pickle`` is False; the
            message names the file and the opt-in (``--allow-pickle`` / ``allow_pickle=True``).
        CheckpointFileError: the file cannot be read (truncated or corrupt); names the file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    if path.suffix == '.safetensors':
        return read_safetensors(path)
    try:
        return _torch_load(path, weights_only=True, map_location=map_location)
    except pickle.UnpicklingError as error:
        if not allow_pickle:
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            reason = next((line for line in lines if 'GLOBAL' in line or 'getattr(' in line), lines[0])
            raise PickleRefusedError(
                f'{path} cannot be loaded weights-only: it holds Python objects beyond tensors and '
                f'plain data.\n  torch says: {reason}\n'
                '  If you trust this file, opt in to unpickling it fully with --allow-pickle '
                '(allow_pickle=True in Python); unpickling can execute code from the file.') from None
    print(f'warning: {path} holds Python objects beyond tensors; unpickling it fully (--allow-pickle)',
          file=sys.stderr)
    return _torch_load(path, weights_only=False, map_location=map_location)


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


def readable_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a checkpoint file that opens (not truncated or corrupt); its content is not loaded
    into anything. A file beyond plain data counts as readable: the trust policy decides later."""
    try:
        load_checkpoint_file(path, allow_pickle=False)
    except PickleRefusedError:
        return True
    except (CheckpointFileError, FileNotFoundError):
        return False
    return True


def newest_readable_checkpoint(work_dir: str | Path, exclude: Sequence[str | Path] = ()) -> Path | None:
    """The newest readable ``*.pth`` of a work dir (by the number in ``iter_N`` / ``epoch_N``, then the
    modification time), ``exclude`` left out; None if there is none. For a resume whose latest checkpoint
    is truncated (a run killed while saving)."""
    def order(path: Path):
        digits = ''.join(ch for ch in path.stem.split('_')[-1] if ch.isdigit())
        return (int(digits) if digits else -1, path.stat().st_mtime)

    excluded = {Path(p).resolve() for p in exclude}
    candidates = [p for p in Path(work_dir).glob('*.pth')
                  if p.resolve() not in excluded and not p.name.startswith('best_')]
    return next((p for p in sorted(candidates, key=order, reverse=True) if readable_checkpoint(p)), None)


#: State dict prefix of the training objective (teacher, queues, FgD centres, MLM head): what an
#: inference model does not have.
OBJECTIVE_PREFIX = 'objective.'


def load_weights(model: nn.Module, path: str | Path, allow_pickle: bool = False) -> list[str]:
    """Load a checkpoint file (mmengine ``.pth`` or ``.safetensors``) into ``model`` strictly.

    A training checkpoint's objective state (``objective.*``: momentum teacher, queues, FgD
    centres, MLM head) is dropped when ``model`` has no objective (an inference model);
    everything else must match key for key. Returns the dropped keys.
    """
    checkpoint = load_checkpoint_file(path, allow_pickle)
    state = unwrap_state_dict(checkpoint, 'state_dict', 'an r2d2lib / mmengine checkpoint', path)
    has_objective = getattr(model, 'objective', None) is not None
    return load_state_dict_strict(model, state, str(path),
                                  ignore_prefixes=() if has_objective else (OBJECTIVE_PREFIX, ))
