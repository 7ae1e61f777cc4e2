"""Embedded demo corpus: coloured shapes with Chinese captions, generated offline.

Every image shows two coloured shapes in two different quadrants, on a light
background with slight noise. Each image gets Chinese captions that name both
objects with every attribute (quadrant, colour, size, shape), e.g.
``左上角有一个红色的大圆形，右下角有一个蓝色的小三角形``.

With ``caption_style='objects'`` each image instead gets one caption per object,
naming it without its quadrant (``有一个红色的大圆形``): the corpus of the attention demo
(docs/inference.md), since captions naming both shapes let masked language modelling
predict a masked colour as "the colour the caption does not name" without looking at
where it is.

Captions need attribute binding: the same words recombine across images. With
``swap_pairs=True`` (default) images come in pairs (``2k``, ``2k + 1``) whose
second member swaps one attribute (colour, shape, size or position) between
the two objects, so both captions hold the very same multiset of characters and
a bag-of-words model cannot tell the two images apart; a cross encoder can.

Layout of ``out_dir``::

    images/train_000000.png ...   images/test_000000.png ...
    train.jsonl, test.jsonl       {"image_path": "images/...", "text": "..."}
                                  one line per caption (ICR/IQR format)
    train_objects.jsonl, test_objects.jsonl
                                  one line per image: image_path, group, swap,
                                  captions, objects (color, shape, size,
                                  quadrant, bbox [x0, y0, x1, y1], x1/y1
                                  exclusive, pixel units)
    vocab.txt                     BERT WordPiece vocab, one token per character
    meta.json                     written last: marks a complete run

CLI: ``python -m r2d2lib.datasets.toy_shapes --out data/toy_shapes``.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

FORMAT_VERSION = 1
META_FILE = 'meta.json'
SPECIAL_TOKENS = ('[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]')

# Attribute vocabularies (Chinese word -> RGB for colours).
COLORS: Dict[str, Tuple[int, int, int]] = {
    '红色': (220, 30, 30),
    '绿色': (30, 160, 50),
    '蓝色': (30, 70, 220),
    '黄色': (235, 190, 0),
}
SHAPES: Tuple[str, ...] = ('圆形', '正方形', '三角形')
SIZES: Tuple[str, ...] = ('大', '小')
# Quadrants as (name, row, column) with row/column 0 = top/left half.
QUADRANTS: Tuple[Tuple[str, int, int], ...] = (
    ('左上角', 0, 0), ('右上角', 0, 1), ('左下角', 1, 0), ('右下角', 1, 1))
# Object side length as a fraction of the quadrant side: (low, high) per size.
SIZE_RANGES: Dict[str, Tuple[float, float]] = {'大': (0.68, 0.82),
                                               '小': (0.34, 0.46)}
BACKGROUND = 240
NOISE = 3
# Caption templates; each takes the two objects in the order given.
TEMPLATES: Tuple[str, ...] = (
    '{q0}有一个{c0}的{z0}{s0}，{q1}有一个{c1}的{z1}{s1}',
    '图片的{q0}是一个{c0}的{z0}{s0}，{q1}是一个{c1}的{z1}{s1}',
    '{c0}的{z0}{s0}在{q0}，{c1}的{z1}{s1}在{q1}',
)
# ``caption_style='objects'``: one caption per object (colour, size, shape; no quadrant).
OBJECT_TEMPLATE = '有一个{c0}的{z0}{s0}'
CAPTION_STYLES = ('scene', 'objects')

Obj = Dict[str, Any]


def _sample_object(rng: np.random.Generator) -> Obj:
    """Draw colour, shape and size of one object."""
    color = list(COLORS)[int(rng.integers(len(COLORS)))]
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    size = SIZES[int(rng.integers(len(SIZES)))]
    return {'color': color, 'shape': shape, 'size': size}


def _same_look(a: Obj, b: Obj) -> bool:
    """Whether two objects share colour, shape and size."""
    return all(a[k] == b[k] for k in ('color', 'shape', 'size'))


def _sample_scene(rng: np.random.Generator) -> List[Obj]:
    """Draw two objects that differ in at least one attribute, in two quadrants."""
    quads = rng.choice(len(QUADRANTS), size=2, replace=False)
    a = _sample_object(rng)
    b = _sample_object(rng)
    while _same_look(a, b):
        b = _sample_object(rng)
    a['quadrant'] = QUADRANTS[int(quads[0])][0]
    b['quadrant'] = QUADRANTS[int(quads[1])][0]
    return [a, b]


def _swap_scene(rng: np.random.Generator,
                scene: List[Obj]) -> Tuple[List[Obj], str]:
    """Swap one differing attribute (or the positions) between the two objects."""
    a, b = (dict(o) for o in scene)
    kinds = ['position'] + [k for k in ('color', 'shape', 'size') if a[k] != b[k]]
    kind = kinds[int(rng.integers(len(kinds)))]
    key = 'quadrant' if kind == 'position' else kind
    a[key], b[key] = b[key], a[key]
    return [a, b], kind


def _place(rng: np.random.Generator, obj: Obj, image_size: int) -> List[int]:
    """Draw a jittered square bounding box for ``obj`` inside its quadrant."""
    half = image_size // 2
    lo, hi = SIZE_RANGES[obj['size']]
    side = int(rng.integers(round(lo * half), round(hi * half) + 1))
    margin = max(1, half // 16)
    span = max(margin, half - side - margin)
    x0 = int(rng.integers(margin, span + 1))
    y0 = int(rng.integers(margin, span + 1))
    _, row, col = next(q for q in QUADRANTS if q[0] == obj['quadrant'])
    x0 += col * half
    y0 += row * half
    return [x0, y0, x0 + side, y0 + side]


def shape_mask(shape: str, bbox: Sequence[int]) -> np.ndarray:
    """Boolean mask (bbox height x width) of ``shape`` filling ``bbox``.

    Circles are inscribed in the box, triangles point up with the base on the
    bottom edge; pixel centres (i + 0.5) decide membership.
    """
    x0, y0, x1, y1 = bbox
    w, h = x1 - x0, y1 - y0
    ys = (np.arange(h) + 0.5)[:, None]
    xs = (np.arange(w) + 0.5)[None, :]
    if shape == '正方形':
        return np.ones((h, w), dtype=bool)
    if shape == '圆形':
        return (xs - w / 2) ** 2 + (ys - h / 2) ** 2 <= (min(w, h) / 2) ** 2
    if shape == '三角形':
        return np.abs(xs - w / 2) <= ys / h * (w / 2)
    raise ValueError(f'unknown shape {shape!r}')


def render(objects: Iterable[Obj], image_size: int,
           rng: np.random.Generator) -> np.ndarray:
    """Render objects (with ``bbox``) into an HxWx3 uint8 RGB array."""
    noise = rng.integers(-NOISE, NOISE + 1, size=(image_size, image_size, 3))
    img = np.full((image_size, image_size, 3), BACKGROUND, dtype=np.int16)
    for obj in objects:
        x0, y0, x1, y1 = obj['bbox']
        region = img[y0:y1, x0:x1]
        region[shape_mask(obj['shape'], obj['bbox'])] = COLORS[obj['color']]
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def _phrase_fields(objs: Sequence[Obj]) -> Dict[str, str]:
    """Template fields for two objects in the given order."""
    fields = {}
    for i, o in enumerate(objs):
        fields.update({f'q{i}': o['quadrant'], f'c{i}': o['color'],
                       f'z{i}': o['size'], f's{i}': o['shape']})
    return fields


def make_captions(rng: np.random.Generator, objects: Sequence[Obj],
                  num: int) -> List[str]:
    """Build ``num`` captions from distinct templates, naming both objects."""
    if not 1 <= num <= len(TEMPLATES):
        raise ValueError(f'captions_per_image must be in 1..{len(TEMPLATES)}')
    first = int(rng.integers(2))
    captions = []
    for k in range(num):
        # Template 1 lists the objects in the reverse order of template 0.
        order = first if k != 1 else 1 - first
        if k >= 2:
            order = int(rng.integers(2))
        objs = [objects[order], objects[1 - order]]
        captions.append(TEMPLATES[k].format(**_phrase_fields(objs)))
    return captions


def vocab_tokens() -> List[str]:
    """Special tokens then every character any caption can use, sorted."""
    chars = set()
    words = (list(COLORS) + list(SHAPES) + list(SIZES)
             + [q[0] for q in QUADRANTS])
    for template in TEMPLATES + (OBJECT_TEMPLATE,):
        literal = template
        for i in range(2):
            for f in 'qczs':
                literal = literal.replace('{' + f'{f}{i}' + '}', '')
        chars.update(literal)
    for word in words:
        chars.update(word)
    return list(SPECIAL_TOKENS) + sorted(chars)


def _quadrant_rank(obj: Obj) -> int:
    """Reading order of an object's quadrant."""
    return [q[0] for q in QUADRANTS].index(obj['quadrant'])


def _write_text(path: str, text: str) -> None:
    """Write UTF-8 text through a temporary file and an atomic rename."""
    tmp = f'{path}.tmp'
    with open(tmp, 'w', encoding='utf-8', newline='\n') as f:
        f.write(text)
    os.replace(tmp, path)


def _jsonl(records: Iterable[Dict[str, Any]]) -> str:
    """JSON-lines text, UTF-8 characters kept as they are."""
    return ''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in records)


def make_object_captions(objects: Sequence[Obj]) -> List[str]:
    """One caption per object, in the given order: ``有一个红色的大圆形``."""
    return [OBJECT_TEMPLATE.format(**_phrase_fields([o])) for o in objects]


def _generate_split(rng: np.random.Generator, split: str, num: int,
                    out_dir: str, image_size: int, captions_per_image: int,
                    swap_pairs: bool, caption_style: str = 'scene') -> Tuple[List[Dict], List[Dict]]:
    """Render and save one split's images; return caption and object records."""
    anns: List[Dict] = []
    objs_records: List[Dict] = []
    scene: List[Obj] = []
    for i in range(num):
        swap: Optional[str] = None
        if swap_pairs and i % 2 == 1:
            scene, swap = _swap_scene(rng, scene)
        else:
            scene = _sample_scene(rng)
        objects = sorted(({**o, 'bbox': _place(rng, o, image_size)}
                          for o in scene), key=_quadrant_rank)
        pixels = render(objects, image_size, rng)
        captions = make_captions(rng, objects, captions_per_image)
        if caption_style == 'objects':  # drawn above all the same, so the images do not change
            captions = make_object_captions(objects)
        rel = f'images/{split}_{i:06d}.png'
        Image.fromarray(pixels).save(osp.join(out_dir, rel), format='PNG')
        anns.extend({'image_path': rel, 'text': c} for c in captions)
        objs_records.append({
            'image_path': rel,
            'group': i // 2 if swap_pairs else i,
            'swap': swap,
            'captions': captions,
            'objects': [{k: o[k] for k in
                         ('color', 'shape', 'size', 'quadrant', 'bbox')}
                        for o in objects],
        })
    return anns, objs_records


def _remove_stale_images(images_dir: str, keep: set) -> None:
    """Delete split images left over from an earlier, larger run."""
    for name in os.listdir(images_dir):
        if name.endswith('.png') and name.split('_')[0] in ('train', 'test') \
                and name not in keep:
            os.remove(osp.join(images_dir, name))


def summary(out_dir: str, meta: Dict[str, Any]) -> Dict[str, Any]:
    """Summary of a generated corpus: parameters, counts and paths."""
    return {
        'out_dir': out_dir,
        **meta['params'],
        **meta['counts'],
        'train_ann_file': osp.join(out_dir, 'train.jsonl'),
        'test_ann_file': osp.join(out_dir, 'test.jsonl'),
        'train_objects_file': osp.join(out_dir, 'train_objects.jsonl'),
        'test_objects_file': osp.join(out_dir, 'test_objects.jsonl'),
        'vocab_file': osp.join(out_dir, 'vocab.txt'),
        'images_dir': osp.join(out_dir, 'images'),
    }


def _params(num_train: int, num_test: int, image_size: int, seed: int,
            captions_per_image: int, swap_pairs: bool, caption_style: str = 'scene') -> Dict[str, Any]:
    """Validated generation parameters as stored in meta.json."""
    if image_size < 16 or image_size % 2:
        raise ValueError(f'image_size must be even and >= 16, got {image_size}')
    if num_train < 0 or num_test < 0:
        raise ValueError('num_train and num_test must be >= 0')
    if not 1 <= captions_per_image <= len(TEMPLATES):
        raise ValueError(f'captions_per_image must be in 1..{len(TEMPLATES)}')
    if caption_style not in CAPTION_STYLES:
        raise ValueError(f'caption_style must be one of {CAPTION_STYLES}, got {caption_style!r}')
    if caption_style == 'objects' and captions_per_image != 2:
        raise ValueError(f"captions_per_image={captions_per_image} does not apply to "
                         "caption_style='objects', which writes one caption per object (2 per image)")
    style = {} if caption_style == 'scene' else {'caption_style': caption_style}  # old meta.json stays valid
    return {**style, 'format_version': FORMAT_VERSION, 'num_train': int(num_train),
            'num_test': int(num_test), 'image_size': int(image_size),
            'seed': int(seed), 'captions_per_image': int(captions_per_image),
            'swap_pairs': bool(swap_pairs)}


def generate_toy_shapes(out_dir: str, num_train: int = 2000,
                        num_test: int = 200, image_size: int = 64,
                        seed: int = 0, captions_per_image: int = 2,
                        swap_pairs: bool = True, caption_style: str = 'scene') -> Dict[str, Any]:
    """Generate the toy shapes corpus into ``out_dir``; return its summary.

    ``caption_style``: ``'scene'`` (captions name both objects with every attribute) or
    ``'objects'`` (one caption per object, without its quadrant; the same images).

    Deterministic in ``seed``: train and test use two independent child
    streams of ``np.random.default_rng(seed)``, so the test split does not
    depend on ``num_train``. ``meta.json`` is removed first and written last,
    so an interrupted run leaves no completion marker.
    """
    params = _params(num_train, num_test, image_size, seed,
                     captions_per_image, swap_pairs, caption_style)
    out_dir = str(out_dir)
    images_dir = osp.join(out_dir, 'images')
    os.makedirs(images_dir, exist_ok=True)
    meta_path = osp.join(out_dir, META_FILE)
    if osp.exists(meta_path):
        os.remove(meta_path)

    train_rng, test_rng = np.random.default_rng(seed).spawn(2)
    counts: Dict[str, int] = {}
    for split, num, rng in (('train', num_train, train_rng),
                            ('test', num_test, test_rng)):
        anns, objs = _generate_split(rng, split, num, out_dir, image_size,
                                     captions_per_image, swap_pairs, caption_style)
        _write_text(osp.join(out_dir, f'{split}.jsonl'), _jsonl(anns))
        _write_text(osp.join(out_dir, f'{split}_objects.jsonl'), _jsonl(objs))
        counts[f'num_{split}_images'] = num
        counts[f'num_{split}_texts'] = len(anns)
    _remove_stale_images(
        images_dir, {f'{s}_{i:06d}.png' for s, n in
                     (('train', num_train), ('test', num_test))
                     for i in range(n)})
    tokens = vocab_tokens()
    _write_text(osp.join(out_dir, 'vocab.txt'), '\n'.join(tokens) + '\n')
    counts['vocab_size'] = len(tokens)
    meta = {'params': params, 'counts': counts}
    _write_text(meta_path, json.dumps(meta, ensure_ascii=False, indent=2))
    return summary(out_dir, meta)


def _read_meta(out_dir: str) -> Optional[Dict[str, Any]]:
    """The completion marker's content, or None if absent or unreadable."""
    try:
        with open(osp.join(out_dir, META_FILE), encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _is_complete(out_dir: str, meta: Dict[str, Any]) -> bool:
    """Whether the files a finished run leaves are all there."""
    files = ['train.jsonl', 'test.jsonl', 'train_objects.jsonl',
             'test_objects.jsonl', 'vocab.txt']
    for split in ('train', 'test'):
        n = meta['params'][f'num_{split}']
        if n:
            files.append(f'images/{split}_{n - 1:06d}.png')
    return all(osp.isfile(osp.join(out_dir, f)) for f in files)


def ensure_toy_shapes(out_dir: str, **kwargs: Any) -> Dict[str, Any]:
    """Generate the corpus unless ``out_dir`` already holds it with these parameters.

    ``kwargs`` are those of :func:`generate_toy_shapes`; return the summary.
    """
    out_dir = str(out_dir)
    defaults = dict(num_train=2000, num_test=200, image_size=64, seed=0,
                    captions_per_image=2, swap_pairs=True, caption_style='scene')
    unknown = set(kwargs) - set(defaults)
    if unknown:
        raise TypeError(f'unexpected arguments {sorted(unknown)}')
    params = _params(**{**defaults, **kwargs})
    meta = _read_meta(out_dir)
    if meta is not None and meta.get('params') == params \
            and _is_complete(out_dir, meta):
        return summary(out_dir, meta)
    return generate_toy_shapes(out_dir, **{**defaults, **kwargs})


def build_toy_tokenizer(vocab_file: str):
    """BERT tokenizer over the toy vocab: one token per Chinese character."""
    from r2d2lib.models.data_preprocessors import build_tokenizer
    return build_tokenizer(dict(vocab_file=str(vocab_file)))


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Command line: generate (if needed) the corpus and print its summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/toy_shapes')
    parser.add_argument('--num-train', type=int, default=2000)
    parser.add_argument('--num-test', type=int, default=200)
    parser.add_argument('--image-size', type=int, default=64)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--captions-per-image', type=int, default=2)
    parser.add_argument('--no-swap-pairs', action='store_true',
                        help='draw every image independently')
    parser.add_argument('--caption-style', choices=CAPTION_STYLES, default='scene',
                        help='scene: captions name both objects; objects: one caption per object')
    parser.add_argument('--force', action='store_true',
                        help='regenerate even if the corpus is up to date')
    args = parser.parse_args(argv)
    kwargs = dict(num_train=args.num_train, num_test=args.num_test,
                  image_size=args.image_size, seed=args.seed,
                  captions_per_image=args.captions_per_image,
                  swap_pairs=not args.no_swap_pairs, caption_style=args.caption_style)
    fn = generate_toy_shapes if args.force else ensure_toy_shapes
    result = fn(args.out, **kwargs)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return result


if __name__ == '__main__':
    main()
