"""Datasets and transforms: retrieval annotations, the toy shapes corpus, image loading.

Importing this package registers ``RetrievalDataset`` and the transforms.
``toy_shapes`` registers nothing and is imported on first use (attribute
access), so ``python -m r2d2lib.datasets.toy_shapes`` runs without runpy's
"found in sys.modules" warning.
"""
from importlib import import_module
from typing import Any

from . import retrieval, transforms  # noqa: F401
from .retrieval import RetrievalDataset
from .transforms import LoadImage, UnreadableImageError

_TOY_NAMES = ('generate_toy_shapes', 'ensure_toy_shapes', 'build_toy_tokenizer')

__all__ = ['RetrievalDataset', 'LoadImage', 'UnreadableImageError',
           'toy_shapes', *_TOY_NAMES]


def __getattr__(name: str) -> Any:
    """Lazily import ``toy_shapes`` and its public functions."""
    if name == 'toy_shapes' or name in _TOY_NAMES:
        module = import_module(f'{__name__}.toy_shapes')
        return module if name == 'toy_shapes' else getattr(module, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
