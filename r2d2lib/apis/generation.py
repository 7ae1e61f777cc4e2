"""Generate images from Chinese text with a :class:`~r2d2lib.models.generators.TextToImageDiffusion`: the
logic behind :meth:`R2D2Inferencer.generate <r2d2lib.apis.R2D2Inferencer.generate>` and
``tools/generate.py``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, Union

from PIL import Image
from torch import nn


def check_generator(model: nn.Module) -> None:
    """Refuse a model that cannot draw (a retrieval model, a captioner), naming what to load instead."""
    if not hasattr(model, 'unet') or not callable(getattr(model, 'generate', None)):
        raise TypeError(f'{type(model).__name__} cannot generate images: it has no UNet. Load a '
                        'text-to-image model (a TextToImageDiffusion folder written by save_pretrained, '
                        'e.g. by make generate-demo)')


def generate_images(model: nn.Module, texts: Union[str, Sequence[str]], num_images: int = 1,
                    steps: Optional[int] = None, guidance: Optional[float] = None,
                    sampler: Optional[str] = None, seed: Optional[int] = None,
                    image_size: Optional[int] = None, batch_size: int = 16,
                    progress: bool = False) -> List[Image.Image]:
    """``num_images`` PIL images per text, text by text (see :meth:`TextToImageDiffusion.generate`).

    Raises:
        TypeError: a model that cannot generate. ValueError: an empty text (its index), ``steps`` < 1,
            ``guidance`` < 0, an ``image_size`` the UNet cannot take, ``num_images`` < 1.
    """
    check_generator(model)
    return model.generate(texts, num_images=num_images, steps=steps, guidance=guidance, sampler=sampler,
                          seed=seed, image_size=image_size, batch_size=batch_size, progress=progress)


def write_grid(images: Sequence[Image.Image], path: Union[str, os.PathLike], columns: int,
               labels: Optional[Sequence[str]] = None, cell_size: Optional[int] = None) -> Path:
    """Save images as one PNG grid, ``columns`` per row (labels under each cell if given)."""
    from r2d2lib.visualization.grid import result_grid
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = cell_size or max(64, images[0].size[0])
    result_grid(list(images), list(labels or [''] * len(images)), columns=columns, cell_size=size).save(path)
    return path
