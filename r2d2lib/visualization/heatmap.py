"""Overlay a heatmap (e.g. an attention map on the patch grid) on an image."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def _colormap(values: np.ndarray, cmap: str) -> np.ndarray:
    """[H, W] values in [0, 1] -> [H, W, 3] uint8 RGB through a matplotlib colormap."""
    from matplotlib import colormaps
    return (colormaps[cmap](values)[..., :3] * 255).round().astype(np.uint8)


def overlay_heatmap(image: Image.Image, heat, alpha: float = 0.5, cmap: str = 'jet',
                    min_side: int = 256) -> Image.Image:
    """``image`` with ``heat`` ([h, w], any scale) upsampled bilinearly to it and blended on top.

    The heat is min-max normalised to [0, 1] and coloured with ``cmap``; ``alpha`` is the
    heatmap's weight. Small images are first enlarged (nearest) so that the shorter side is
    at least ``min_side`` pixels, which keeps a 64 px toy image readable.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f'alpha must be in [0, 1], got {alpha}')
    heat = torch.as_tensor(np.asarray(heat), dtype=torch.float32)
    if heat.ndim != 2:
        raise ValueError(f'heat must be a 2-D map, got shape {tuple(heat.shape)}')
    image = image.convert('RGB')
    scale = max(1, -(-min_side // min(image.size)))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    up = torch.nn.functional.interpolate(heat[None, None], size=(image.height, image.width),
                                         mode='bilinear', align_corners=False)[0, 0]
    span = float(up.max() - up.min())
    up = (up - up.min()) / span if span > 0 else torch.zeros_like(up)
    colours = _colormap(up.numpy(), cmap).astype(np.float32)
    blended = (1 - alpha) * np.asarray(image, dtype=np.float32) + alpha * colours
    return Image.fromarray(blended.round().clip(0, 255).astype(np.uint8))
