"""Embed images and texts with a trained model into resumable shards (for tools/build_index.py).

    python tools/extract_features.py --checkpoint work_dirs/demo/epoch_8.pth --allow-pickle \
        --images data/toy_shapes/images --texts captions.txt --out work_dirs/features
    python tools/extract_features.py --model work_dirs/demo/model --images data/toy_shapes/images \
        --glob 'test_*' --out work_dirs/test_features
    python tools/extract_features.py --model r2d2_vitb_23m --images list.txt --out features
    python tools/extract_features.py --checkpoint ... --dataset configs/demo/r2d2_tiny_shapes.py \
        --split test --out features

Inputs: ``--images`` is a folder (searched recursively for image files, sorted) or a text file
with one image path per line (relative paths are relative to the list file's folder);
``--glob PATTERN`` keeps the images whose file name matches it (``fnmatch``: ``'test_*'``,
``'*.jpg'``), in a folder at any depth or in a list;
``--texts`` a UTF-8 file with one text per line (blank lines skipped); ``--dataset`` a config
whose ``<split>_dataloader.dataset`` is an ICR/IQR JSON-lines dataset: its distinct images
and all its captions.

Output, per modality (``<out>/images``, ``<out>/texts``)::

    manifest.json         kind, model, dim, shard size, item count, hash of the item list
    shard_00000.npy       float32 [n, D] L2-normalised embeddings
    shard_00000.json      {"ids": [...]}: image paths or texts, row for row; written last

Resuming: a shard whose ``.json`` exists and matches is skipped, so an interrupted run
continues where it stopped; a changed item list, shard size or model is refused (start a
new ``--out`` or pass ``--overwrite``).
"""
from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from r2d2lib.apis.cli import add_model_arguments, inferencer_from_args
from r2d2lib.apis.inferencer import load_image

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.gif', '.tif', '.tiff')
MANIFEST = 'manifest.json'
FORMAT_VERSION = 1


# ----------------------------------------------------------------------------- inputs
def name_matches(path: str, pattern: Optional[str]) -> bool:
    """Whether the file name of ``path`` matches the ``--glob`` pattern (None: every name does)."""
    return pattern is None or fnmatch.fnmatchcase(os.path.basename(path), pattern)


def images_from_folder(folder: Path, pattern: Optional[str] = None) -> List[str]:
    """Image files under ``folder`` (recursive, by extension; names matching ``pattern``), sorted."""
    paths = sorted(str(p) for p in folder.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                   and name_matches(p.name, pattern))
    if not paths:
        matching = f' named {pattern!r}' if pattern is not None else ''
        raise SystemExit(f'{folder} holds no image files{matching} ({", ".join(IMAGE_SUFFIXES)})')
    return paths


def images_from_list(list_file: Path) -> List[str]:
    """Paths listed one per line; relative ones are relative to the list file's folder."""
    paths = []
    for line in list_file.read_text(encoding='utf-8').splitlines():
        line = line.strip()
        if line:
            path = Path(line)
            paths.append(str(path if path.is_absolute() else list_file.parent / path))
    if not paths:
        raise SystemExit(f'{list_file} lists no image paths')
    return paths


def texts_from_file(text_file: Path) -> List[str]:
    """Non-blank lines of a UTF-8 file (blank lines are skipped and counted)."""
    lines = text_file.read_text(encoding='utf-8').splitlines()
    texts = [line.strip() for line in lines if line.strip()]
    if len(texts) < len(lines):
        print(f'{text_file}: skipped {len(lines) - len(texts)} blank lines', file=sys.stderr)
    if not texts:
        raise SystemExit(f'{text_file} holds no texts')
    return texts


def from_dataset_config(config: Path, split: str) -> Tuple[List[str], List[str]]:
    """Distinct image paths and all captions of ``<split>_dataloader.dataset`` of a config."""
    from mmengine.config import Config

    from r2d2lib.datasets.retrieval import parse_line
    cfg = Config.fromfile(str(config))
    key = f'{split}_dataloader'
    if key not in cfg or 'dataset' not in cfg[key]:
        raise SystemExit(f'{config} has no {key}.dataset')
    dataset = cfg[key].dataset
    if 'ann_file' not in dataset:
        raise SystemExit(f'{config}: {key}.dataset has no ann_file (an ICR/IQR JSON-lines dataset is needed)')
    root = Path(dataset.get('data_root') or '.')
    ann_file = root / dataset.ann_file
    if not ann_file.is_file():
        raise SystemExit(f'{config}: {key}.dataset.ann_file {ann_file} does not exist')
    prefix = root / ((dataset.get('data_prefix') or {}).get('img_path') or '')
    images, texts, seen = [], [], set()
    with open(ann_file, 'rb') as f:
        for lineno, raw in enumerate(f, 1):
            record = parse_line(raw, str(ann_file), lineno)
            if record is None:
                continue
            path = str(prefix / record['image_path'])
            if path not in seen:
                seen.add(path)
                images.append(path)
            texts.append(record['text'])
    return images, texts


# ----------------------------------------------------------------------------- shards
def items_hash(items: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(item.encode('utf-8') + b'\0')
    return digest.hexdigest()


def shard_name(index: int) -> str:
    return f'shard_{index:05d}'


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + '.partial')
    write(tmp)
    os.replace(tmp, path)


def shard_done(folder: Path, index: int, ids: Sequence[str], dim: int) -> bool:
    """Whether shard ``index`` is complete for ``ids``: its .json (written last) lists them, in order,
    as embedded or as skipped (unreadable), and the array has a row per embedded one."""
    meta, array = folder / f'{shard_name(index)}.json', folder / f'{shard_name(index)}.npy'
    if not (meta.is_file() and array.is_file()):
        return False
    try:
        stored = json.loads(meta.read_text(encoding='utf-8'))
        shape = np.load(array, mmap_mode='r').shape
        kept, skipped = stored['ids'], set(stored.get('skipped', []))
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return kept == [i for i in ids if i not in skipped] and skipped <= set(ids) and shape == (len(kept), dim)


def write_shard(folder: Path, index: int, ids: Sequence[str], embeddings: np.ndarray,
                skipped: Sequence[str] = ()) -> None:
    """Embeddings first, then the ids file that marks the shard complete (both atomically)."""
    name = shard_name(index)

    def save_array(path: Path) -> None:
        with open(path, 'wb') as f:
            np.save(f, embeddings.astype(np.float32))
    _atomic_write(folder / f'{name}.npy', save_array)
    ids_json = json.dumps({'ids': list(ids), 'skipped': list(skipped)}, ensure_ascii=False)
    _atomic_write(folder / f'{name}.json', lambda p: p.write_text(ids_json, encoding='utf-8'))


def check_manifest(folder: Path, manifest: dict, overwrite: bool) -> None:
    """Refuse to resume into a folder made from other items, shard size or model."""
    path = folder / MANIFEST
    if not path.is_file() or overwrite:
        if overwrite:
            for stale in folder.glob('shard_*'):
                stale.unlink()
        return
    old = json.loads(path.read_text(encoding='utf-8'))
    changed = [k for k in ('kind', 'num_items', 'items_sha256', 'shard_size', 'model', 'dim')
               if old.get(k) != manifest.get(k)]
    if changed:
        before = ', '.join(f'{k} was {old.get(k)!r}' for k in changed)
        raise SystemExit(f'{path} was written for other {", ".join(changed)} ({before}); use another --out '
                         'or --overwrite')


def iter_shards(num_items: int, shard_size: int) -> Iterator[Tuple[int, slice]]:
    for index, start in enumerate(range(0, num_items, shard_size)):
        yield index, slice(start, min(start + shard_size, num_items))


def embed_images(inferencer, paths: Sequence[str], strict: bool) -> Tuple[List[str], np.ndarray, List[str]]:
    """``(embedded paths, embeddings, unreadable paths)``, loading one batch of images at a time.

    An unreadable image is logged and skipped (``strict``: an error naming it), so that a long
    extraction survives a few bad files.
    """
    kept, arrays, skipped = [], [], []
    for start in range(0, len(paths), inferencer.batch_size):
        images = []
        for path in paths[start:start + inferencer.batch_size]:
            try:
                images.append(load_image(path))
                kept.append(path)
            except OSError as error:
                if strict:
                    raise
                tqdm.write(f'skipped unreadable image: {error}', file=sys.stderr)
                skipped.append(path)
        if images:
            arrays.append(inferencer.encode_images(images, progress=False).numpy())
    embeddings = np.concatenate(arrays) if arrays else np.zeros((0, inferencer.embed_dim), np.float32)
    return kept, embeddings, skipped


def extract(inferencer, kind: str, items: List[str], folder: Path, shard_size: int, model_name: str,
            overwrite: bool = False, max_shards: Optional[int] = None,
            strict: bool = False) -> Dict[str, int]:
    """Embed ``items`` into shards under ``folder``; returns counts of shards written and already done,
    and of unreadable images skipped in this run."""
    folder.mkdir(parents=True, exist_ok=True)
    dim = inferencer.embed_dim
    manifest = dict(format_version=FORMAT_VERSION, kind=kind, model=model_name, dim=dim,
                    shard_size=shard_size, num_items=len(items), num_shards=-(-len(items) // shard_size),
                    items_sha256=items_hash(items))
    check_manifest(folder, manifest, overwrite)
    _atomic_write(folder / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=2), encoding='utf-8'))
    counts = dict(written=0, skipped=0, unreadable=0)
    with tqdm(total=len(items), desc=f'embed {kind}', unit=kind[:-1]) as bar:
        for index, part in iter_shards(len(items), shard_size):
            ids = items[part]
            if shard_done(folder, index, ids, dim):
                counts['skipped'] += 1
            else:
                if max_shards is not None and counts['written'] >= max_shards:
                    break
                if kind == 'images':
                    kept, embeddings, unreadable = embed_images(inferencer, ids, strict)
                else:
                    embeddings = inferencer.encode_texts(ids, progress=False).numpy()
                    kept, unreadable = ids, []
                write_shard(folder, index, kept, embeddings, unreadable)
                counts['written'] += 1
                counts['unreadable'] += len(unreadable)
            bar.update(len(ids))
    return counts


def read_features(folder: Path) -> Tuple[np.ndarray, List[str], dict]:
    """All shards of a complete extraction: embeddings [N, D] float32, ids, manifest."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f'{path} does not exist: run tools/extract_features.py first')
    manifest = json.loads(path.read_text(encoding='utf-8'))
    arrays, ids, skipped = [], [], 0
    for index in range(manifest['num_shards']):
        meta = Path(folder) / f'{shard_name(index)}.json'
        if not meta.is_file():
            raise FileNotFoundError(f'{meta} is missing: the extraction into {folder} is not finished '
                                    '(run tools/extract_features.py again with the same arguments to resume)')
        stored = json.loads(meta.read_text(encoding='utf-8'))
        ids.extend(stored['ids'])
        skipped += len(stored.get('skipped', []))
        arrays.append(np.load(Path(folder) / f'{shard_name(index)}.npy'))
    embeddings = np.concatenate(arrays) if arrays else np.zeros((0, manifest['dim']), np.float32)
    if len(ids) + skipped != manifest['num_items'] or embeddings.shape != (len(ids), manifest['dim']):
        raise ValueError(f'{folder}: {len(ids)} ids ({skipped} skipped) and embeddings {embeddings.shape}, '
                         f"but the manifest says {manifest['num_items']} items of dimension "
                         f"{manifest['dim']}")
    return embeddings, ids, dict(manifest, num_skipped=skipped)


# ----------------------------------------------------------------------------- command line
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    add_model_arguments(parser)
    parser.add_argument('--images', type=Path, help='image folder, or a file listing image paths')
    parser.add_argument('--glob', metavar='PATTERN',
                        help="only the --images whose file name matches, e.g. 'test_*' or '*.jpg'")
    parser.add_argument('--texts', type=Path, help='text file, one text per line')
    parser.add_argument('--dataset', type=Path, help='config of an ICR/IQR dataset: its images and captions')
    parser.add_argument('--split', default='test', help='dataloader of --dataset: train, val or test')
    parser.add_argument('--out', type=Path, required=True, help='output folder (images/ and texts/ inside)')
    parser.add_argument('--shard-size', type=int, default=10000, help='items per shard file')
    parser.add_argument('--max-shards', type=int, default=None,
                        help='stop after writing this many new shards per modality (time-boxed jobs)')
    parser.add_argument('--overwrite', action='store_true', help='discard shards of an earlier run in --out')
    parser.add_argument('--strict', action='store_true',
                        help='stop at an unreadable image (default: log it, skip it and count it)')
    args = parser.parse_args(argv)
    if args.images is None and args.texts is None and args.dataset is None:
        parser.error('give --images, --texts and/or --dataset')
    if args.dataset is not None and (args.images is not None or args.texts is not None):
        parser.error('--dataset gives both images and texts: do not combine it with --images / --texts')
    if args.shard_size < 1:
        parser.error('--shard-size must be positive')
    if args.glob is not None and args.images is None:
        parser.error('--glob filters --images: give --images too')
    return args


def collect_inputs(args) -> Dict[str, List[str]]:
    inputs = {}
    if args.dataset is not None:
        inputs['images'], inputs['texts'] = from_dataset_config(args.dataset, args.split)
    if args.images is not None:
        if not args.images.exists():
            raise SystemExit(f'--images {args.images} does not exist')
        if args.images.is_dir():
            inputs['images'] = images_from_folder(args.images, args.glob)
        else:
            inputs['images'] = [p for p in images_from_list(args.images) if name_matches(p, args.glob)]
            if not inputs['images']:
                raise SystemExit(f'no path in {args.images} has a file name matching {args.glob!r}')
    if args.texts is not None:
        if not args.texts.is_file():
            raise SystemExit(f'--texts {args.texts} does not exist')
        inputs['texts'] = texts_from_file(args.texts)
    return inputs


def main(argv=None) -> None:
    args = parse_args(argv)
    inputs = collect_inputs(args)
    inferencer = inferencer_from_args(args)
    model_name = args.model or os.path.abspath(args.checkpoint)
    for kind, items in inputs.items():
        counts = extract(inferencer, kind, items, args.out / kind, args.shard_size, model_name,
                         overwrite=args.overwrite, max_shards=args.max_shards, strict=args.strict)
        total = -(-len(items) // args.shard_size)
        notes = [f"{counts['written']} written", f"{counts['skipped']} already done"]
        if counts['unreadable']:
            notes.append(f"{counts['unreadable']} unreadable images skipped")
        if counts['written'] + counts['skipped'] < total:
            notes.append('stopped early: run again to continue')
        print(f'{kind}: {len(items)} items, {total} shards in {args.out / kind} ({", ".join(notes)})')


if __name__ == '__main__':
    main()
