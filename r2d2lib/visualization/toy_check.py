"""Does the entity attention point at the entity? A check on the toy-shapes corpus.

Every toy image holds two shapes whose boxes are in the corpus metadata
(``<split>_objects.jsonl``); its caption names each with a phrase such as ``红色的大圆形``
(colour 的 size shape). For each image and each of its two objects, the entity attention
of that phrase (:func:`~r2d2lib.visualization.attention.entity_attention`) is spread over
the pixels and summed inside both boxes; the object *wins* when its own box gets more
attention than the other object's box. Since both objects of every image are asked, an
entity-blind map (e.g. one that always favours the larger shape) scores 50%.

Two measures are reported: ``mass`` (attention summed inside the box, the literal
criterion) and ``density`` (mass per pixel of the box, which discounts the size of the box).
The text is either the image's caption that names the object (``text='caption'``) or the
phrase alone (``text='entity'``), the paper's "attention score of an image-entity pair"
(Sec. 4.4). The fractions are also given for the pairs whose two shapes differ in colour,
where the colour word alone could tell the boxes apart (a model that attends by colour scores
far from 50% there, in either direction).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Union

import torch
from tqdm import tqdm

from r2d2lib.io.images import open_rgb

from . import attention


def object_phrase(obj: dict) -> str:
    """How the toy captions name an object: colour 的 size shape, e.g. ``红色的大圆形``."""
    return f"{obj['color']}的{obj['size']}{obj['shape']}"


def caption_naming(record: dict, obj: dict) -> str:
    """The first caption of ``record`` that contains ``obj``'s phrase; ValueError naming the image if none."""
    phrase = object_phrase(obj)
    for caption in record['captions']:
        if phrase in caption:
            return caption
    raise ValueError(f"{record['image_path']}: no caption names {phrase!r}")


TEXT_MODES = ('caption', 'entity')


def box_mass(pixel_map: torch.Tensor, bbox) -> float:
    """Attention inside ``bbox`` [x0, y0, x1, y1] (x1/y1 exclusive) of a [H, W] pixel map."""
    x0, y0, x1, y1 = (int(v) for v in bbox)
    return float(pixel_map[y0:y1, x0:x1].sum())


def load_objects(data_dir: Union[str, Path], split: str = 'test') -> List[dict]:
    """The per-image records (path, captions, objects with boxes) of a toy-shapes split."""
    path = Path(data_dir) / f'{split}_objects.jsonl'
    if not path.is_file():
        raise FileNotFoundError(f'{path} does not exist: not a toy-shapes corpus folder (see '
                                'r2d2lib/datasets/toy_shapes.py)')
    records = []
    for number, line in enumerate(path.read_text(encoding='utf-8').splitlines(), 1):
        record = json.loads(line)
        if len(record.get('objects', [])) != 2 or not record.get('captions'):
            raise ValueError(f'{path}:{number}: expected two objects and at least one caption')
        records.append(record)
    return records


def measure_entity_localisation(model, data_dir: Union[str, Path], split: str = 'test', layer: int = 2,
                                limit: Optional[int] = None, batch_size: int = 50,
                                progress: bool = True, text: str = 'caption') -> Dict[str, object]:
    """Fractions of (image, object) pairs whose entity attention favours the object's own box.

    ``text``: ``'caption'`` reads the phrase naming the object inside the image's first
    caption that names it; ``'entity'`` feeds the phrase alone. Returns a dict with ``pairs``,
    ``mass_win`` / ``density_win`` (fractions), the same restricted to red circles
    (``red_circle_*``) and to pairs of differently coloured shapes (``different_colour_*``),
    the mean attention share inside the own and the other box, ``layer`` and ``text``.
    """
    attention.check_layer(model, layer)
    return _measure(model, data_dir, split, [layer], limit, batch_size, progress, text)[layer]


def measure_entity_localisation_per_layer(model, data_dir: Union[str, Path], split: str = 'test',
                                          limit: Optional[int] = None, batch_size: int = 50,
                                          progress: bool = True,
                                          text: str = 'caption') -> Dict[int, Dict[str, object]]:
    """:func:`measure_entity_localisation` of every text-image layer (1-based keys), from one pass."""
    layers = list(range(1, attention.text_image_layers(model) + 1))
    return _measure(model, data_dir, split, layers, limit, batch_size, progress, text)


@torch.no_grad()
def _measure(model, data_dir, split: str, layers: List[int], limit: Optional[int], batch_size: int,
             progress: bool, text: str) -> Dict[int, Dict[str, object]]:
    """Summaries per layer; the attention maps of a batch are computed once for all layers."""
    if text not in TEXT_MODES:
        raise ValueError(f'text must be one of {TEXT_MODES}, got {text!r}')
    records = load_objects(data_dir, split)[:limit]
    preprocessor = model.data_preprocessor
    prefix, grid_shape = model.image_encoder.num_prefix_tokens, attention.patch_grid_shape(model)
    # per layer: (is red circle, mass win, density win, own mass, other mass, colours differ)
    outcomes: Dict[int, List[tuple]] = {layer: [] for layer in layers}
    desc = f'entity attention, layer{"s" * (len(layers) > 1)} {", ".join(map(str, layers))}'
    with tqdm(total=len(records), desc=desc, disable=not progress) as bar:
        for start in range(0, len(records), batch_size):
            batch = records[start:start + batch_size]
            images = [open_rgb(Path(data_dir) / r['image_path']) for r in batch]
            maps_of = {}  # texts -> maps: a caption naming both objects serves both passes
            for i in range(2):  # one pass per object: its text may differ from the other object's
                objects = [r['objects'][i] for r in batch]
                texts = tuple(object_phrase(o) if text == 'entity' else caption_naming(r, o)
                              for r, o in zip(batch, objects))
                if texts not in maps_of:
                    maps_of[texts] = attention.cross_attention_maps(model, images, list(texts))
                maps = maps_of[texts]
                for row, (record, image, obj) in enumerate(zip(batch, images, objects)):
                    positions = attention.entity_token_positions(
                        preprocessor.tokenizer, texts[row], object_phrase(obj), preprocessor.max_length)
                    for layer in layers:
                        grid = attention.entity_grid(maps[layer - 1][row], positions, prefix, grid_shape)
                        pixels = attention.upsample_to(grid, image.width, image.height)
                        outcomes[layer].append(compare_boxes(pixels, obj, record['objects'][1 - i]))
            bar.update(len(batch))
    return {layer: dict(summarise(rows, layer), text=text) for layer, rows in outcomes.items()}


def compare_boxes(pixel_map: torch.Tensor, obj: dict, other: dict) -> tuple:
    """(is a red circle, own box has more mass, own box has more density, own mass, other mass,
    the two shapes differ in colour)."""
    own, rival = box_mass(pixel_map, obj['bbox']), box_mass(pixel_map, other['bbox'])
    return (obj['color'] == '红色' and obj['shape'] == '圆形', own > rival,
            own / _area(obj['bbox']) > rival / _area(other['bbox']), own, rival,
            obj['color'] != other['color'])


def _area(bbox) -> int:
    return max(1, (int(bbox[2]) - int(bbox[0])) * (int(bbox[3]) - int(bbox[1])))


def summarise(outcomes: List[tuple], layer: int) -> Dict[str, object]:
    """Fractions over all pairs and over the red circles (see :func:`measure_entity_localisation`)."""
    def fraction(rows, column):
        return sum(r[column] for r in rows) / len(rows) if rows else float('nan')
    red = [r for r in outcomes if r[0]]
    different = [r for r in outcomes if r[5]]
    return dict(layer=layer, pairs=len(outcomes), mass_win=fraction(outcomes, 1),
                density_win=fraction(outcomes, 2), red_circle_pairs=len(red),
                red_circle_mass_win=fraction(red, 1), red_circle_density_win=fraction(red, 2),
                different_colour_pairs=len(different), different_colour_mass_win=fraction(different, 1),
                mean_own_mass=fraction(outcomes, 3), mean_other_mass=fraction(outcomes, 4))
