"""Make mmengine's checkpoint loading (resume, ``load_from``) work on torch >= 2.6.

mmengine 0.10.x reads local checkpoints with ``torch.load(filename, map_location)``.
Since torch 2.6 that means ``weights_only=True``, which refuses mmengine's own
training checkpoints: their message hub pickles ``HistoryBuffer`` objects, numpy
arrays and ``getattr`` calls. We replace the loader of local paths with one that

1. tries ``weights_only=True`` with mmengine's and numpy's plain data types
   allow-listed (enough for weights-only files such as converted checkpoints), and
2. otherwise falls back to a full unpickle, logging that it does so. This applies
   to every local path mmengine loads (``--resume``, ``load_from``, an ``init_cfg``
   Pretrained file) once ``r2d2lib`` is imported: local checkpoints are trusted, as
   mmengine always did before torch 2.6.

Remote URLs keep torch's safe default; models from the Hub are loaded from
safetensors, never through this path.
"""
import os.path as osp
import pickle

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner.checkpoint import CheckpointLoader

SAFE_GLOBALS = [HistoryBuffer, np.ndarray, np.dtype, np._core.multiarray._reconstruct,
                np._core.multiarray.scalar] + [getattr(np.dtypes, n) for n in np.dtypes.__all__]


def load_weights_only(filename: str, map_location=None):
    """``torch.load(weights_only=True)`` with mmengine's and numpy's plain data types allowed."""
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        return torch.load(filename, map_location=map_location, weights_only=True)


def load_from_local(filename: str, map_location=None):
    """Load a local checkpoint: weights-only if possible, else a logged full unpickle.

    Named as mmengine's own loader, whose log line prints the name after ``load_from_``.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    try:
        return load_weights_only(filename, map_location)
    except pickle.UnpicklingError:
        print_log(f'{filename} holds Python objects beyond tensors (an mmengine training '
                  'checkpoint): unpickling it fully. Only resume from checkpoints you trust.',
                  logger='current')
        return torch.load(filename, map_location=map_location, weights_only=False)


def install_checkpoint_loader() -> None:
    """Register :func:`load_from_local` as mmengine's loader for local paths."""
    CheckpointLoader.register_scheme(prefixes='', force=True)(load_from_local)
