"""Entity-conditioned cross-attention (the paper's Sec. 4.4, Fig. 2).

For an image, a text and an entity (a word or phrase of the text), the map shows where
the entity's tokens look in the image: the text-image cross encoder's cross-attention
probabilities at one layer (the paper reads the 3rd), averaged over heads and over the
entity's tokens, restricted to the image's patch tokens (the [CLS] / prefix tokens are
left out and the rest renormalised to sum 1) and laid out on the patch grid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence

import torch
from PIL import Image
from torch import Tensor

#: The layer the paper visualises (3rd of the text-image cross encoder's 6).
PAPER_LAYER = 3


@dataclass
class EntityAttention:
    """The attention of one entity over the patch grid.

    ``grid`` [gh, gw] sums to 1; ``token_positions`` are the entity's token indices in
    the tokenised text ([CLS] = 0); ``layer`` is 1-based.
    """

    grid: Tensor
    token_positions: List[int]
    layer: int


def entity_token_positions(tokenizer, text: str, entity: str, max_length: int,
                           occurrence: int = 1) -> List[int]:
    """Indices of the tokens of ``text`` (tokenised as the model does) that cover ``entity``.

    ``entity`` is found as a substring of ``text`` (case-insensitively, as the tokenizer
    lower-cases), its ``occurrence``-th appearance; every token whose character span
    overlaps it is part of the entity. Raises ValueError naming the entity and the text when
    it does not occur, or lies beyond the ``max_length`` tokens the model reads.
    """
    if not entity:
        raise ValueError('the entity is empty')
    start = -1
    for _ in range(occurrence):
        start = text.lower().find(entity.lower(), start + 1)
        if start < 0:
            times = '' if occurrence == 1 else f' {occurrence} times'
            raise ValueError(f'entity {entity!r} does not occur{times} in the text {text!r}')
    end = start + len(entity)
    encoded = tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=True)
    positions = [i for i, (s, e) in enumerate(encoded['offset_mapping']) if e > s and s < end and e > start]
    if not positions:
        raise ValueError(f'entity {entity!r} lies beyond the first {max_length} tokens of {text!r}, which '
                         'the model reads')
    return positions


def text_image_layers(model) -> int:
    """The number of layers of the model's text-image cross encoder."""
    if not hasattr(model, 'text_image_encoder'):
        raise TypeError(f'{type(model).__name__} has no text-image cross encoder: entity attention needs an '
                        'R2D2 model, not a dual encoder')
    return len(model.text_image_encoder.layer)


def check_layer(model, layer: int) -> None:
    """ValueError unless ``layer`` (1-based) is a layer of the text-image cross encoder."""
    num = text_image_layers(model)
    if not 1 <= layer <= num:
        raise ValueError(f'the text-image cross encoder has {num} layer{"s" * (num != 1)}, so layer {layer} '
                         f'does not exist: choose a layer in 1..{num} (the paper reads layer {PAPER_LAYER} '
                         f'of 6; for a shallower model the last layer, {num}, is the closest)')


def patch_grid_shape(model) -> tuple:
    """(rows, columns) of the image encoder's patch grid (square images)."""
    num_patches = model.image_encoder.num_patches
    side = math.isqrt(num_patches)
    if side * side != num_patches:
        raise ValueError(f'{num_patches} patches do not form a square grid')
    return side, side


@torch.no_grad()
def cross_attention_maps(model, images: Sequence[Image.Image], texts: Sequence[str]) -> List[Tensor]:
    """Per layer, the text-image cross encoder's attention [B, heads, L, P+N] of pair i (image i, text i)."""
    text_image_layers(model)
    device = next(model.parameters()).device
    pixels = model.preprocess(list(images)).to(device)
    tokens = {k: v.to(device) for k, v in model.tokenize(list(texts)).items()}
    image_tokens = model.image_encoder(pixels)
    hidden = model.text_encoder(tokens['input_ids'], tokens['attention_mask'])
    return [m.float().cpu() for m in model.text_image_encoder.attention_maps(
        hidden, model.fusion_tokens(image_tokens), x_mask=tokens['attention_mask'])]


def entity_grid(layer_map: Tensor, positions: Sequence[int], num_prefix_tokens: int,
                grid_shape: tuple) -> Tensor:
    """[gh, gw] map of one pair's layer attention [heads, L, P+N]: mean over heads and the entity's
    rows, prefix tokens dropped, renormalised to sum 1."""
    rows = layer_map.mean(dim=0)[list(positions)].mean(dim=0)
    patches = rows[num_prefix_tokens:]
    total = patches.sum()
    if total <= 0:
        raise ValueError('the entity attends to no image patch (all weight on the prefix tokens)')
    return (patches / total).reshape(grid_shape)


def entity_attention(model, image: Image.Image, text: str, entity: str, layer: int = PAPER_LAYER,
                     occurrence: int = 1) -> EntityAttention:
    """The attention of ``entity`` (in ``text``) over ``image``'s patches at ``layer`` (1-based)."""
    check_layer(model, layer)
    preprocessor = model.data_preprocessor
    positions = entity_token_positions(preprocessor.tokenizer, text, entity, preprocessor.max_length,
                                       occurrence)
    maps = cross_attention_maps(model, [image], [text])
    grid = entity_grid(maps[layer - 1][0], positions, model.image_encoder.num_prefix_tokens,
                       patch_grid_shape(model))
    return EntityAttention(grid=grid, token_positions=positions, layer=layer)


def upsample_to(grid: Tensor, width: int, height: int) -> Tensor:
    """A patch-grid map [gh, gw] spread over the image's pixels [height, width], still summing to 1.

    Each patch's weight is shared evenly by the pixels it covers (nearest upsampling, then
    renormalised), so the weight inside a pixel box is the box's share of the attention.
    """
    up = torch.nn.functional.interpolate(grid[None, None].float(), size=(height, width), mode='nearest')[0, 0]
    return up / up.sum()
