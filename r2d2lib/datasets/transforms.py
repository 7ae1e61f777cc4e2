"""Data pipeline transforms: image loading with a clear error for unreadable files.

Config spelling (with ``default_scope = 'r2d2lib'``)::

    pipeline = [
        dict(type='LoadImage'),
        dict(type='Resize', scale=(S, S), keep_ratio=False,
             interpolation='bicubic', backend='pillow'),      # mmcv
        dict(type='RandomResizedCrop', scale=S,
             interpolation='bicubic', backend='pillow'),       # mmpretrain
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),  # mmcv
        dict(type='PackInputs', algorithm_keys=['text', 'image_idx', 'text_idx'],
             meta_keys=['img_path', 'image_id']),              # mmpretrain
    ]

Plain names work because this module registers the mmpretrain transforms
listed in ``_MMPRETRAIN_TRANSFORMS`` into r2d2lib's ``TRANSFORMS`` (mmpretrain
keeps them in its own, sibling registry, which a plain name in the 'r2d2lib'
scope does not search). mmcv's transforms (``Resize``, ``RandomFlip``,
``CenterCrop``, ``Normalize`` ...) live in mmengine's root ``TRANSFORMS``, the
parent of ours, so they resolve by plain name already. The scoped spellings
``type='mmpretrain.PackInputs'`` and ``type='mmpretrain.RandomResizedCrop'``
work as well.

``Resize`` with ``backend='pillow'`` is ``PIL.Image.fromarray(img).resize(
(S, S), interp)``, hence bit-identical to resizing the RGB PIL image directly.
"""
from __future__ import annotations

import struct
from typing import Any, Dict, Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.datasets import transforms as mmpretrain_transforms
from PIL import Image

from r2d2lib.registry import TRANSFORMS

# mmpretrain transforms exposed under plain names in the 'r2d2lib' scope.
_MMPRETRAIN_TRANSFORMS = ('PackInputs', 'RandomResizedCrop', 'ResizeEdge',
                          'ColorJitter', 'RandomErasing', 'RandAugment',
                          'CleanCaption')
for _name in _MMPRETRAIN_TRANSFORMS:
    TRANSFORMS.register_module(module=getattr(mmpretrain_transforms, _name))

# What PIL raises for a missing, truncated or non-image file.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error,
                  Image.DecompressionBombError)


class UnreadableImageError(Exception):
    """Raised when an image file is missing, truncated or not an image."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = str(reason)
        super().__init__(f'cannot read image {self.path!r}: {self.reason}')

    def __reduce__(self) -> Any:
        """Pickle with both arguments (DataLoader workers re-raise in the parent)."""
        return type(self), (self.path, self.reason)


def load_rgb(path: str) -> np.ndarray:
    """Decode ``path`` fully into an HxWx3 uint8 RGB array.

    Raises:
        UnreadableImageError: on any I/O or decoding error, naming ``path``.
    """
    try:
        with Image.open(path) as img:
            img.load()
            rgb = img.convert('RGB')
        return np.asarray(rgb, dtype=np.uint8).copy()
    except _DECODE_ERRORS as err:
        raise UnreadableImageError(path, f'{type(err).__name__}: {err}') from err


@TRANSFORMS.register_module()
class LoadImage(BaseTransform):
    """Load ``results['img_path']`` with PIL as an RGB uint8 array.

    Adds ``img`` (HxWx3, RGB), ``img_shape`` and ``ori_shape`` ((H, W)).
    Unreadable files raise :class:`UnreadableImageError`; ``RetrievalDataset``
    skips them in training and fails loudly in test mode.
    """

    def transform(self, results: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """Load the image named by ``results['img_path']``."""
        img = load_rgb(results['img_path'])
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}()'
