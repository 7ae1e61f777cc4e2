"""Datasets and transforms: the Zero corpus, the downstream benchmarks, the toy corpus, image loading.

Importing this package registers every dataset, the transforms and
``DatasetEpochSampler`` (see docs/datasets.md for the layouts and the record
contract).
``toy_shapes`` registers nothing and is imported on first use (attribute
access), so ``python -m r2d2lib.datasets.toy_shapes`` runs without runpy's
"found in sys.modules" warning.
"""
from importlib import import_module
from typing import Any

from . import retrieval, samplers, transforms  # noqa: F401
from .aic_icc import AICICCDataset
from .base import ImageTextDataset, PairCollector, SkipUnreadableDataset
from .coco_cn import COCOCNDataset
from .flickr30k_cn import Flickr30kCNDataset
from .matching import MatchingDataset
from .muge import MUGEDataset
from .retrieval import RetrievalDataset
from .samplers import DatasetEpochSampler
from .text_choice import choose_text
from .transforms import LoadImage, UnreadableImageError
from .zero_corpus import ZeroCorpusDataset
from .zero_shards import ZeroCorpusShardDataset
from .zero_shot import ZeroShotClassificationDataset

_TOY_NAMES = ('generate_toy_shapes', 'ensure_toy_shapes', 'build_toy_tokenizer')

__all__ = ['RetrievalDataset', 'MatchingDataset', 'Flickr30kCNDataset', 'COCOCNDataset',
           'AICICCDataset', 'MUGEDataset', 'ZeroCorpusDataset', 'ZeroCorpusShardDataset',
           'ZeroShotClassificationDataset', 'ImageTextDataset', 'SkipUnreadableDataset',
           'PairCollector', 'DatasetEpochSampler', 'choose_text', 'LoadImage',
           'UnreadableImageError', 'toy_shapes', *_TOY_NAMES]


def __getattr__(name: str) -> Any:
    """Lazily import ``toy_shapes`` and its public functions."""
    if name == 'toy_shapes' or name in _TOY_NAMES:
        module = import_module(f'{__name__}.toy_shapes')
        return module if name == 'toy_shapes' else getattr(module, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
