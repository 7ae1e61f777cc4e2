"""Build a faiss inner-product index from extracted features (tools/extract_features.py).

    python tools/build_index.py work_dirs/features/images --out work_dirs/index_images
    python tools/build_index.py FEATURES --type ivf --nlist 4096 --nprobe 32 --out INDEX
    python tools/build_index.py FEATURES --type ivf --nlist 16384 --pq 64 --out INDEX   # IVF-PQ
    python tools/build_index.py FEATURES --type hnsw --hnsw-m 32 --ef-construction 200 --ef-search 128

Embeddings are L2-normalised, so the inner product is the cosine similarity. Index types:

- ``flat``: exact search (``IndexFlatIP``); right up to a few hundred thousand items;
- ``ivf``: inverted lists over ``--nlist`` k-means cells, ``--nprobe`` cells searched per query
  (``IVF<nlist>,Flat``; ``--pq M`` compresses the vectors to M bytes: ``IVF<nlist>,PQ<M>``);
  trained on ``--train-size`` sampled items. Rule of thumb: nlist ~ 4 sqrt(N) to 16 sqrt(N);
- ``hnsw``: a graph index (``HNSW<M>,Flat``), no training, ``--ef-search`` trades speed for recall.

The output folder holds ``index.faiss``, ``ids.json`` (row -> image path or text) and
``index.json`` (type, parameters, dimension, count, the features' manifest), which
tools/search.py reads.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract_features import read_features  # noqa: E402  (a sibling tool)

INDEX_FILE, IDS_FILE, META_FILE = 'index.faiss', 'ids.json', 'index.json'
PQ_MIN_TRAIN = 39 * 256


def _faiss():
    try:
        import faiss
    except ImportError as error:
        raise SystemExit('faiss is not installed: pip install faiss-cpu (or faiss-gpu), or '
                         "pip install -e '.[index]'") from error
    return faiss


def factory_string(kind: str, num_items: int, nlist: int, pq: int, hnsw_m: int) -> str:
    """The faiss ``index_factory`` description of an index type and its parameters."""
    if kind == 'flat':
        return 'Flat'
    if kind == 'ivf':
        if nlist > num_items:
            raise SystemExit(f'--nlist {nlist} exceeds the {num_items} items: k-means needs at least one '
                             'item per cell (use fewer cells or --type flat)')
        return f'IVF{nlist},' + (f'PQ{pq}' if pq else 'Flat')
    if kind == 'hnsw':
        return f'HNSW{hnsw_m},Flat'
    raise SystemExit(f'unknown index type {kind!r}')


def build_index(embeddings: np.ndarray, kind: str = 'flat', nlist: int = 1024, nprobe: int = 16, pq: int = 0,
                hnsw_m: int = 32, ef_construction: int = 200, ef_search: int = 128,
                train_size: int = 262144, seed: int = 0):
    """A faiss index (inner product) holding ``embeddings`` [N, D], search parameters set."""
    faiss = _faiss()
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    num, dim = embeddings.shape
    if pq and dim % pq:
        raise SystemExit(f'--pq {pq} must divide the embedding dimension {dim}')
    if pq and min(num, train_size) < PQ_MIN_TRAIN:
        raise SystemExit(f'--pq trains 256 codes per sub-vector and needs at least {PQ_MIN_TRAIN} training '
                         f'items (faiss advises 39 x 256); {min(num, train_size)} are available: use ivf '
                         'without --pq')
    index = faiss.index_factory(dim, factory_string(kind, num, nlist, pq, hnsw_m), faiss.METRIC_INNER_PRODUCT)
    if kind == 'hnsw':
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        sample = embeddings if num <= train_size else embeddings[rng.choice(num, train_size, replace=False)]
        index.train(sample)
    index.add(embeddings)
    if kind == 'ivf':
        faiss.extract_index_ivf(index).nprobe = nprobe
    return index


def save_index(index, ids: List[str], out: Path, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _faiss().write_index(index, str(out / INDEX_FILE))
    (out / IDS_FILE).write_text(json.dumps(ids, ensure_ascii=False), encoding='utf-8')
    (out / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding='utf-8')


def load_index(folder: Path):
    """``(index, ids, meta)`` of a folder written by this tool (search parameters restored)."""
    folder = Path(folder)
    for name in (INDEX_FILE, IDS_FILE, META_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f'{folder / name} is missing: build the index with tools/build_index.py')
    faiss = _faiss()
    index = faiss.read_index(str(folder / INDEX_FILE))
    ids = json.loads((folder / IDS_FILE).read_text(encoding='utf-8'))
    meta = json.loads((folder / META_FILE).read_text(encoding='utf-8'))
    if index.ntotal != len(ids):
        raise ValueError(f'{folder}: the index holds {index.ntotal} vectors but ids.json {len(ids)}')
    if meta['type'] == 'ivf':
        faiss.extract_index_ivf(index).nprobe = meta['params']['nprobe']
    elif meta['type'] == 'hnsw':
        index.hnsw.efSearch = meta['params']['ef_search']
    return index, ids, meta


def self_recall(index, embeddings: np.ndarray, k: int = 10, samples: int = 1000, seed: int = 0) -> float:
    """Share of sampled items whose exact top-1 neighbour (themselves, usually) is in the index's top k."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(embeddings), min(samples, len(embeddings)), replace=False)
    queries = np.ascontiguousarray(embeddings[rows])
    exact = np.argmax(queries @ embeddings.T, axis=1)
    _, found = index.search(queries, k)
    return float(np.mean([e in f for e, f in zip(exact, found)]))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('features', type=Path, help='a modality folder of extract_features (.../images)')
    parser.add_argument('--out', type=Path, required=True, help='index folder to write')
    parser.add_argument('--type', choices=('flat', 'ivf', 'hnsw'), default='flat')
    parser.add_argument('--nlist', type=int, default=1024, help='ivf: number of k-means cells')
    parser.add_argument('--nprobe', type=int, default=16, help='ivf: cells searched per query')
    parser.add_argument('--pq', type=int, default=0, help='ivf: product-quantise to this many bytes (0: off)')
    parser.add_argument('--hnsw-m', type=int, default=32, help='hnsw: neighbours per node')
    parser.add_argument('--ef-construction', type=int, default=200, help='hnsw: build-time beam width')
    parser.add_argument('--ef-search', type=int, default=128, help='hnsw: search-time beam width')
    parser.add_argument('--train-size', type=int, default=262144, help='ivf: items sampled for k-means')
    args = parser.parse_args(argv)
    embeddings, ids, manifest = read_features(args.features)
    start = time.perf_counter()
    params = dict(nlist=args.nlist, nprobe=args.nprobe, pq=args.pq, hnsw_m=args.hnsw_m,
                  ef_construction=args.ef_construction, ef_search=args.ef_search, train_size=args.train_size)
    index = build_index(embeddings, args.type, **params)
    seconds = time.perf_counter() - start
    recall = self_recall(index, embeddings)
    meta = dict(type=args.type, factory=factory_string(args.type, len(ids), args.nlist, args.pq, args.hnsw_m),
                params=params, dim=int(embeddings.shape[1]), count=len(ids), kind=manifest['kind'],
                model=manifest['model'], features=str(args.features.resolve()),
                build_seconds=round(seconds, 3), self_recall_at_10=recall)
    save_index(index, ids, args.out, meta)
    print(f"{meta['factory']} index of {len(ids)} {manifest['kind']} (dim {meta['dim']}) in {args.out}, "
          f'built in {seconds:.1f}s; an item finds its exact nearest neighbour in the top 10 for '
          f'{100 * recall:.1f}% of {min(1000, len(ids))} sampled items')


if __name__ == '__main__':
    main()
