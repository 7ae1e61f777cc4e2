"""Data pipeline transforms: image loading (through :mod:`r2d2lib.io.images`) with clear errors.

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

import base64
import binascii
from typing import Any, Dict, Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.datasets import transforms as mmpretrain_transforms

from r2d2lib.io import images as image_io
from r2d2lib.io.images import DEFAULT_MAX_PIXELS, ImageTooLargeError, UnreadableImageError
from r2d2lib.registry import TRANSFORMS

__all__ = ['DEFAULT_MAX_PIXELS', 'ImageTooLargeError', 'LoadImage', 'UnreadableImageError', 'decode_rgb',
           'load_rgb', 'read_tsv_image_bytes']

# mmpretrain transforms exposed under plain names in the 'r2d2lib' scope.
_MMPRETRAIN_TRANSFORMS = ('PackInputs', 'RandomResizedCrop', 'ResizeEdge',
                          'ColorJitter', 'RandomErasing', 'RandAugment',
                          'CleanCaption')
for _name in _MMPRETRAIN_TRANSFORMS:
    TRANSFORMS.register_module(module=getattr(mmpretrain_transforms, _name))


def load_rgb(path: str, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode ``path`` into an HxWx3 uint8 RGB array (:func:`r2d2lib.io.images.open_rgb`).

    Raises:
        UnreadableImageError: on any I/O or decoding error, naming ``path``
            (:class:`ImageTooLargeError` above ``max_pixels``).
    """
    return image_io.load_rgb(path, max_pixels, str(path))


def decode_rgb(data: bytes, where: str, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, ...) into RGB; errors name ``where``."""
    return image_io.load_rgb(data, max_pixels, where)


def read_tsv_image_bytes(tsv_file: str, offset: int, image_id: Optional[str] = None,
                         where: Optional[str] = None) -> bytes:
    """Read the base64 image on the line at byte ``offset`` of an ``id<TAB>base64`` TSV file.

    ``image_id`` (if given) must be the line's first field, which catches a
    stale offset. Raises:
        UnreadableImageError: file unreadable, line malformed or not base64.
    """
    where = where or f'{tsv_file}@{offset}'
    try:
        with open(tsv_file, 'rb') as f:
            f.seek(offset)
            line = f.readline()
    except OSError as err:
        raise UnreadableImageError(where, f'{type(err).__name__}: {err}') from err
    key, sep, payload = line.rstrip(b'\r\n').partition(b'\t')
    if not sep:
        raise UnreadableImageError(where, f'no tab-separated image on the line at byte {offset}')
    if image_id is not None and key.decode('utf-8', 'replace') != str(image_id):
        raise UnreadableImageError(
            where, f'the line at byte {offset} holds image {key[:40]!r}, not {image_id!r} '
            '(was the file changed after the dataset was built?)')
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error as err:
        raise UnreadableImageError(where, f'invalid base64: {err}') from err


@TRANSFORMS.register_module()
class LoadImage(BaseTransform):
    """Load a record's image with PIL as an RGB uint8 array.

    The image comes from, in this order of precedence:

    * ``results['img_bytes']``: encoded bytes (webdataset shards); removed
      from ``results`` once decoded;
    * ``results['img_file']`` + ``results['img_offset']``: the base64 image on
      the line at that byte offset of an ``id<TAB>base64`` TSV file (MUGE);
      ``results['image_id']``, if present, must match the line's id;
    * ``results['img_path']``: an image file.

    Decoding is :func:`r2d2lib.io.images.open_rgb` (EXIF orientation, 16/32-bit and
    float modes scaled to 8 bits, alpha on white, palette and CMYK converted). Adds ``img``
    (HxWx3, RGB), ``img_shape`` and ``ori_shape`` ((H, W)). Unreadable images raise
    :class:`UnreadableImageError` naming ``img_path``, images of more than ``max_pixels``
    pixels :class:`ImageTooLargeError` (before decoding); the datasets skip both in training
    (counted in the data report) and fail loudly in test mode.

    Args:
        max_pixels: the pixel limit (width * height); None: no limit.
    """

    def __init__(self, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> None:
        if max_pixels is not None and int(max_pixels) <= 0:
            raise ValueError(f'LoadImage: max_pixels must be positive or None, got {max_pixels!r}')
        self.max_pixels = None if max_pixels is None else int(max_pixels)

    def transform(self, results: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """Load the record's image (bytes, TSV line or file)."""
        where = str(results.get('img_path', '<image>'))
        data = results.pop('img_bytes', None)
        if data is None and results.get('img_offset') is not None:
            image_id = results.get('image_id')
            data = read_tsv_image_bytes(results['img_file'], int(results['img_offset']),
                                        None if image_id is None else str(image_id), where)
        source = results['img_path'] if data is None else data
        img = image_io.load_rgb(source, self.max_pixels, where)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(max_pixels={self.max_pixels})'
