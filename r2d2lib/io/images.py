"""The one image decoder of r2d2lib: training, evaluation, the inferencer, the tools and the web demo.

:func:`open_rgb` turns a path, encoded bytes, a file object or a PIL image into an 8-bit RGB PIL
image, the same way everywhere:

* **pixel limit** first, from the header alone (before any pixel is decoded): an image of more
  than ``max_pixels`` pixels (default :data:`DEFAULT_MAX_PIXELS`, 40 megapixels, well below
  Pillow's own 89-megapixel warning) raises :class:`ImageTooLargeError`; so does a header Pillow
  itself refuses (``DecompressionBombError``);
* **EXIF orientation** applied (``ImageOps.exif_transpose``): a photo shows as its camera meant;
* **16-bit integer** (``I;16``, ``I;16B``, ...) scaled by 255/65535 (rounded); **32-bit integer**
  (``I``) the same when every value fits in 16 bits (what Pillow gives for 16-bit PNG and TIFF
  files), otherwise by 255/(2**31 - 1); negative values are an error; **32-bit float** (``F``)
  read as [0, 1] and scaled by 255; values outside [0, 1], NaN or infinity are an error (the range
  of such an image is not knowable, so it is never guessed);
* **alpha** (``RGBA``, ``LA``, ``PA``, a palette or ``L``/``RGB`` image with a transparent colour)
  composited on **white**: a transparent pixel shows white, not the colour hidden under it;
* **palette**, **CMYK**, ``1``, ``L``, ``YCbCr`` converted to RGB by Pillow.

Every failure raises :class:`UnreadableImageError` (or its subclass :class:`ImageTooLargeError`)
naming the image; its ``category`` (``'unreadable'``, ``'missing'``, ``'too_large'``) is the row
of the data report (:mod:`r2d2lib.datasets.data_report`) a skipped training image is counted in.
This module imports nothing from r2d2lib, so every layer may use it.
"""
from __future__ import annotations

import io
import os
import struct
from typing import IO, Any, Optional, Union

import numpy as np
from PIL import Image, ImageOps

#: default pixel limit (width * height) of :func:`open_rgb`
DEFAULT_MAX_PIXELS = 40_000_000

ImageSource = Union[str, os.PathLike, bytes, bytearray, IO[bytes], Image.Image]

# What PIL raises for a missing, truncated or non-image file.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, TypeError)
_ALPHA_MODES = ('RGBA', 'LA', 'PA', 'RGBa', 'La')


class UnreadableImageError(Exception):
    """An image that cannot be used: missing, truncated, not an image, or unconvertible.

    ``category`` is ``'missing'`` (no such file), ``'too_large'`` (:class:`ImageTooLargeError`)
    or ``'unreadable'`` (anything else).
    """

    category = 'unreadable'

    def __init__(self, path: str, reason: str, category: Optional[str] = None) -> None:
        self.path = str(path)
        self.reason = str(reason)
        if category is not None:
            self.category = category
        super().__init__(f'cannot read image {self.path!r}: {self.reason}')

    def __reduce__(self) -> Any:
        """Pickle with every argument (DataLoader workers re-raise in the parent)."""
        return type(self), (self.path, self.reason, self.category)


class ImageTooLargeError(UnreadableImageError):
    """An image with more pixels than the limit (``max_pixels``); raised before decoding."""

    category = 'too_large'


def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return '<image>'


def _check_size(size: tuple, max_pixels: Optional[int], where: str) -> None:
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(where, f'{width}x{height} = {width * height:,} pixels is more than the '
                                        f'limit of max_pixels={max_pixels:,}')


def _bits_per_sample(image: Image.Image) -> Optional[int]:
    tags = getattr(image, 'tag_v2', None)
    bits = tags.get(258) if tags is not None else None
    if isinstance(bits, tuple):
        bits = bits[0] if bits else None
    return int(bits) if bits else None


def _integer_to_l(image: Image.Image, where: str) -> Image.Image:
    """A 16- or 32-bit integer greyscale image as 8-bit ``L`` (see the module doc)."""
    values = np.asarray(image).astype(np.int64)
    if image.mode.startswith('I;16'):
        full = 65535
    else:
        if values.size and values.min() < 0:
            raise UnreadableImageError(where, f'32-bit integer image with negative values (min '
                                              f'{int(values.min())}): its range is not knowable')
        fits_16 = not values.size or values.max() <= 65535
        full = 65535 if fits_16 and _bits_per_sample(image) != 32 else 2 ** 31 - 1
    return Image.fromarray(((values * 255 + full // 2) // full).astype(np.uint8), 'L')


def _float_to_l(image: Image.Image, where: str) -> Image.Image:
    """A 32-bit float image in [0, 1] as 8-bit ``L``; other ranges are an error."""
    values = np.asarray(image, dtype=np.float64)
    bad = int((~np.isfinite(values)).sum())
    if bad:
        raise UnreadableImageError(where, f'float image with {bad} NaN or infinite value(s)')
    if values.size and (values.min() < 0 or values.max() > 1):
        raise UnreadableImageError(where, f'float image with values in [{values.min():g}, '
                                          f'{values.max():g}], outside [0, 1]: its scale is not knowable')
    return Image.fromarray(np.rint(values * 255).astype(np.uint8), 'L')


def to_rgb(image: Image.Image, where: str = '<image>') -> Image.Image:
    """An opened PIL image as 8-bit RGB: EXIF orientation, bit depth, alpha on white, palette/CMYK.

    Raises:
        UnreadableImageError: a mode that cannot be converted faithfully (see the module doc).
    """
    try:
        image = ImageOps.exif_transpose(image) or image
    except _DECODE_ERRORS:  # a malformed EXIF block: the pixels are still good
        pass
    mode = image.mode
    if mode.startswith('I;16') or mode == 'I':
        image = _integer_to_l(image, where)
    elif mode == 'F':
        image = _float_to_l(image, where)
    elif mode == 'P' or (mode in ('L', 'RGB') and 'transparency' in image.info):
        image = image.convert('RGBA')
    elif mode in ('PA', 'La', 'RGBa'):
        image = image.convert('RGBA')
    if image.mode in ('LA', 'RGBA'):
        rgba = image.convert('RGBA')
        white = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert('RGB')
    if image.mode == 'RGB':
        return image
    try:
        return image.convert('RGB')
    except _DECODE_ERRORS as err:
        raise UnreadableImageError(where, f'mode {mode} cannot be converted to RGB ({err})') from err


def open_rgb(source: ImageSource, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
             where: Optional[str] = None) -> Image.Image:
    """Decode ``source`` (path, bytes, binary file or PIL image) into an 8-bit RGB PIL image.

    ``max_pixels`` (None: no limit) is checked from the header before decoding; a PIL image
    given as such is already decoded and only converted. ``where`` names the image in errors
    (default: the path).

    Raises:
        ImageTooLargeError: more than ``max_pixels`` pixels (or a header Pillow refuses).
        UnreadableImageError: missing, truncated, not an image, or not convertible.
    """
    where = where or _describe(source)
    if isinstance(source, Image.Image):
        return to_rgb(source, where)
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(bytes(source))
    try:
        with Image.open(source) as image:
            _check_size(image.size, max_pixels, where)
            image.load()
            return to_rgb(image, where)
    except Image.DecompressionBombError as err:
        raise ImageTooLargeError(where, f'{err}') from err
    except FileNotFoundError as err:
        raise UnreadableImageError(where, f'{type(err).__name__}: {err}', 'missing') from err
    except UnreadableImageError:
        raise
    except _DECODE_ERRORS as err:
        raise UnreadableImageError(where, f'{type(err).__name__}: {err}') from err


def load_rgb(source: ImageSource, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
             where: Optional[str] = None) -> np.ndarray:
    """:func:`open_rgb` as an HxWx3 uint8 array."""
    return np.asarray(open_rgb(source, max_pixels, where), dtype=np.uint8).copy()
