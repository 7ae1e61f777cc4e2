"""Does a generated toy image show what its caption names? Colour and shape per named quadrant.

A toy caption names two objects, each with a quadrant, colour, size and shape
(:mod:`r2d2lib.datasets.toy_shapes`). :func:`detect_objects` reads an image back with the generator's own
palette and masks: every pixel takes the nearest of the background grey and the four colours (RGB
distance); in each quadrant the colour with the most pixels (at least ``min_fraction`` of the quadrant)
is the object's colour, and its shape is the one whose :func:`~r2d2lib.datasets.toy_shapes.shape_mask`,
drawn in the bounding box of that colour's pixels, agrees best with them (intersection over union).
:func:`attribute_accuracy` scores a list of images against captions: an object counts as right when
both its colour and its shape are found in its quadrant (size is not scored).

Chance is measured, not assumed: :func:`attribute_accuracy` of the same images against other captions
(``chance_offset``: image i against caption i + N/2, so a swapped pair never meets) scores what an image
that ignores its caption would get. With the four colours and three shapes drawn uniformly, an object
that is present by luck has the named colour and shape 1/12 of the time (8.3%).
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from .toy_shapes import BACKGROUND, COLORS, QUADRANTS, SHAPES, SIZES, shape_mask

#: A named object of a caption: (quadrant, colour, shape).
Named = Tuple[str, str, str]
_WORD = '|'.join
_QUAD, _COLOR, _SIZE, _SHAPE = (_WORD(q[0] for q in QUADRANTS), _WORD(COLORS), _WORD(SIZES), _WORD(SHAPES))
# The three templates of toy_shapes.TEMPLATES: quadrant first ("左上角有一个红色的大圆形",
# "图片的左上角是一个红色的大圆形") or last ("红色的大圆形在左上角").
_QUADRANT_FIRST = re.compile(f'({_QUAD})(?:有|是)一个({_COLOR})的(?:{_SIZE})({_SHAPE})')
_QUADRANT_LAST = re.compile(f'({_COLOR})的(?:{_SIZE})({_SHAPE})在({_QUAD})')
PALETTE = np.array([(BACKGROUND,) * 3] + list(COLORS.values()), dtype=np.float32)
COLOR_NAMES = list(COLORS)
#: Analytic chance that an object present by luck has the named colour and shape.
CHANCE_COLOUR_AND_SHAPE = 1.0 / (len(COLORS) * len(SHAPES))


def named_objects(caption: str) -> List[Named]:
    """The (quadrant, colour, shape) of every object a toy caption names, in caption order."""
    found = [(q, c, s) for q, c, s in _QUADRANT_FIRST.findall(caption)]
    found += [(q, c, s) for c, s, q in _QUADRANT_LAST.findall(caption)]
    if not found:
        raise ValueError(f'not a toy-shapes caption (no "quadrant colour shape" phrase): {caption!r}')
    return found


def _quadrant_box(name: str, size: int) -> Tuple[int, int, int, int]:
    _, row, col = next(q for q in QUADRANTS if q[0] == name)
    half = size // 2
    return col * half, row * half, (col + 1) * half, (row + 1) * half


def _best_shape(mask: np.ndarray) -> Optional[str]:
    """The shape whose mask in the box of ``mask``'s pixels (1st-99th percentile) agrees best (IoU)."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    y0, y1 = int(np.floor(np.percentile(ys, 1))), int(np.ceil(np.percentile(ys, 99))) + 1
    x0, x1 = int(np.floor(np.percentile(xs, 1))), int(np.ceil(np.percentile(xs, 99))) + 1
    side = max(y1 - y0, x1 - x0)  # toy shapes are drawn in square boxes
    box = mask[y0:y0 + side, x0:x0 + side]
    best, best_iou = None, -1.0
    for shape in SHAPES:
        template = shape_mask(shape, [0, 0, side, side])[:box.shape[0], :box.shape[1]]
        union = np.logical_or(template, box).sum()
        iou = np.logical_and(template, box).sum() / union if union else 0.0
        if iou > best_iou:
            best, best_iou = shape, iou
    return best


def detect_objects(image: Image.Image, min_fraction: float = 0.03) -> Dict[str, Tuple[Optional[str],
                                                                                       Optional[str]]]:
    """quadrant -> (colour, shape) found there, ``(None, None)`` where no colour covers ``min_fraction``."""
    pixels = np.asarray(image.convert('RGB'), dtype=np.float32)
    size = pixels.shape[0]
    if pixels.shape[1] != size:
        raise ValueError(f'toy images are square, got {pixels.shape[1]}x{size}')
    nearest = ((pixels[:, :, None, :] - PALETTE[None, None]) ** 2).sum(-1).argmin(-1)  # 0: background
    found = {}
    for quadrant, _, _ in QUADRANTS:
        x0, y0, x1, y1 = _quadrant_box(quadrant, size)
        labels = nearest[y0:y1, x0:x1]
        counts = np.bincount(labels.ravel(), minlength=len(PALETTE))[1:]
        colour = int(counts.argmax())
        if counts[colour] < min_fraction * labels.size:
            found[quadrant] = (None, None)
            continue
        found[quadrant] = (COLOR_NAMES[colour], _best_shape(labels == colour + 1))
    return found


def attribute_accuracy(images: Sequence[Image.Image], captions: Sequence[str],
                       chance_offset: Optional[int] = None) -> Dict[str, float]:
    """Percentages over every named object: ``colour`` (the named colour in the named quadrant),
    ``shape`` (the named shape there), ``colour_and_shape`` (both; the headline number), and the count
    ``objects``. ``chance_offset``: score image i against caption (i + offset) mod N instead."""
    if len(images) != len(captions) or not images:
        raise ValueError(f'{len(images)} images but {len(captions)} captions (need as many, at least one)')
    hits = dict(colour=0, shape=0, colour_and_shape=0)
    total = 0
    for index, image in enumerate(images):
        caption = captions[index if chance_offset is None else (index + chance_offset) % len(captions)]
        found = detect_objects(image)
        for quadrant, colour, shape in named_objects(caption):
            got_colour, got_shape = found[quadrant]
            hits['colour'] += got_colour == colour
            hits['shape'] += got_shape == shape
            hits['colour_and_shape'] += got_colour == colour and got_shape == shape
            total += 1
    return {**{k: 100.0 * v / total for k, v in hits.items()}, 'objects': total}
