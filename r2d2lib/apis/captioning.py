"""Caption images with an :class:`~r2d2lib.models.captioners.ImageCaptioner`: the logic behind
:meth:`R2D2Inferencer.caption <r2d2lib.apis.R2D2Inferencer.caption>` and ``tools/caption.py``."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Sequence, Union

import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from r2d2lib.models.captioners.captioner import check_generation

from .inferencer import ImageInput, load_image

#: ``tools/caption.py`` / ``caption()`` names -> :meth:`ImageCaptioner.generate` options.
OPTION_NAMES = dict(beams='num_beams', max_length='max_length', min_length='min_length', sample='do_sample',
                    top_p='top_p', temperature='temperature', repetition_penalty='repetition_penalty')


def generation_options(**options) -> Dict[str, object]:
    """User-facing names (``beams``, ``sample``, ...) or the generate names -> checked generate options;
    None values are left to the model's defaults."""
    out = {}
    for name, value in options.items():
        if value is None:
            continue
        key = OPTION_NAMES.get(name, name)
        if key not in OPTION_NAMES.values():
            raise KeyError(f'unknown caption option {name!r} (known: {sorted(OPTION_NAMES)})')
        out[key] = value
    return check_generation(out)


def check_captioner(model: nn.Module) -> None:
    """Refuse a model that has no text decoder (a retrieval model), naming what to load instead."""
    if not callable(getattr(model, 'generate', None)) or not hasattr(model, 'text_decoder'):
        raise TypeError(f'{type(model).__name__} cannot caption: it has no text decoder. Load a captioner '
                        '(an ImageCaptioner folder written by save_pretrained, e.g. by make caption-demo)')


@torch.no_grad()
def caption_images(model: nn.Module, images: Union[ImageInput, Sequence[ImageInput]], batch_size: int = 32,
                   progress: bool = False, **options) -> List[str]:
    """One caption per image (PIL images or paths), generated ``batch_size`` images at a time.

    Options: ``beams`` (>= 1; 1 is greedy), ``max_length`` (tokens, >= 2), ``min_length``, ``sample``
    (nucleus sampling with ``top_p``, ``temperature``), ``repetition_penalty``; the model's
    ``generation`` settings fill the rest. Every option is checked before any image is read.

    Raises:
        ValueError: no images, or a bad option (naming it). OSError: an image that cannot be read
            (naming its path). TypeError: a model that cannot caption.
    """
    check_captioner(model)
    opts = generation_options(**options)
    if isinstance(images, (Image.Image, str, os.PathLike)):
        images = [images]
    images = list(images)
    if not images:
        raise ValueError('no images to caption (an empty list)')
    if batch_size < 1:
        raise ValueError(f'batch_size must be positive, got {batch_size}')
    param = next(model.parameters())
    captions: List[str] = []
    with tqdm(total=len(images), desc='caption', disable=not progress) as bar:
        for start in range(0, len(images), batch_size):
            part = [load_image(image) for image in images[start:start + batch_size]]
            pixels = model.preprocess(part).to(device=param.device, dtype=param.dtype)
            captions.extend(model.generate(pixels, **opts))
            bar.update(len(part))
    return captions


def write_captions(path: Union[str, os.PathLike], images: Sequence[ImageInput],
                   captions: Sequence[str]) -> Path:
    """JSON lines ``{"image": path, "caption": text}`` (UTF-8, one per image, in order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        for image, caption in zip(images, captions):
            name = os.fspath(image) if isinstance(image, (str, os.PathLike)) else None
            f.write(json.dumps(dict(image=name, caption=caption), ensure_ascii=False) + '\n')
    return path
