"""Search a faiss index (tools/build_index.py) with a Chinese text or an image, re-ranked by R2D2.

    python tools/search.py work_dirs/index_images --text '左上角有一个红色的大圆形' \
        --checkpoint work_dirs/demo/epoch_8.pth --allow-pickle --top-k 10 --rerank-k 20 --grid results.png
    python tools/search.py work_dirs/index_texts --image query.png --model r2d2_vitb_23m

The query is embedded with the model's tower, the index returns the ``max(top-k, rerank-k)``
nearest items, and the first ``--rerank-k`` are re-ranked by the cross encoders (matching
probability + similarity, as the retrieval loop; 0 disables). Prints the ranked items (image
paths or texts) with their scores and writes a grid picture of the results (``--grid``) and,
with ``--json``, the results as JSON. Use the model the features were extracted with; image
paths in the index are as they were given to extract_features (relative to its working folder).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from r2d2lib.apis.cli import add_model_arguments, inferencer_from_args
from r2d2lib.apis.inferencer import load_image
from r2d2lib.visualization import result_grid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_index import load_index  # noqa: E402  (a sibling tool)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('index', type=Path, help='folder written by tools/build_index.py')
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument('--text', help='a text query')
    query.add_argument('--image', type=Path, help='an image query')
    add_model_arguments(parser)
    parser.add_argument('--top-k', type=int, default=10, help='results to show')
    parser.add_argument('--rerank-k', type=int, default=20,
                        help='candidates re-ranked by the cross encoders (0: embedding similarity only)')
    parser.add_argument('--grid', type=Path, default=Path('search_results.png'), help='result grid PNG')
    parser.add_argument('--columns', type=int, default=5, help='grid columns')
    parser.add_argument('--json', type=Path, help='also write the results here')
    parser.add_argument('--font', help='a font file with Chinese glyphs for the grid labels')
    args = parser.parse_args(argv)
    if args.top_k < 1 or args.rerank_k < 0:
        parser.error('--top-k must be positive and --rerank-k non-negative')
    if args.image is not None and not args.image.is_file():
        parser.error(f'--image {args.image} does not exist')
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    index, ids, meta = load_index(args.index)
    inferencer = inferencer_from_args(args)
    query, query_kind = (args.text, 'text') if args.text is not None else (args.image, 'image')
    embedding = inferencer.encode_query(query, query_kind).numpy().astype(np.float32)
    if embedding.shape[0] != index.d:
        raise SystemExit(f'the model embeds into {embedding.shape[0]} dimensions but the index holds '
                         f'{index.d}: use the model the features were extracted with ({meta["model"]})')
    rerank_k = args.rerank_k
    same_modality = (query_kind, meta['kind']) in (('text', 'texts'), ('image', 'images'))
    if rerank_k and (same_modality or not inferencer.has_cross_encoders):
        why = 'the query and the index are the same modality' if same_modality else 'a dual encoder'
        print(f'not re-ranking: {why}', file=sys.stderr)
        rerank_k = 0
    depth = min(max(args.top_k, rerank_k), len(ids))
    scores, rows = index.search(embedding[None], depth)
    found = rows[0] >= 0  # faiss pads with -1 when fewer items are reachable
    rows, scores = rows[0][found], scores[0][found]
    results = inferencer.rerank(query, [ids[r] for r in rows], scores, indices=rows, rerank_k=rerank_k,
                                gallery_kind=meta['kind'], query_kind=query_kind)[:args.top_k]

    reranked = ' + cross-encoder probability' if rerank_k else ''
    print(f'{query_kind} query over {len(ids)} {meta["kind"]} ({meta["factory"]}): top {len(results)} by '
          f'similarity{reranked}')
    print(f'{"rank":>4} {"score":>7} {"sim":>7} {"match":>7}  item')
    for rank, r in enumerate(results, 1):
        match = f'{r.rerank_score:7.4f}' if r.rerank_score is not None else f'{"-":>7}'
        print(f'{rank:>4} {r.score:7.4f} {r.embedding_score:7.4f} {match}  {r.item}')

    cells = [load_image(r.item) if meta['kind'] == 'images' else r.item for r in results]
    labels = [f'{rank}. {r.score:.3f}' + (f' (p={r.rerank_score:.2f})' if r.rerank_score is not None else '')
              for rank, r in enumerate(results, 1)]
    query_cell = load_image(args.image) if query_kind == 'image' else args.text
    grid = result_grid(cells, labels, columns=args.columns, query=query_cell, cjk_font=args.font)
    args.grid.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.grid)
    print(f'grid: {args.grid}')
    if args.json is not None:
        payload = dict(query=str(query), query_kind=query_kind, index=str(args.index),
                       results=[asdict(r) for r in results])
        args.json.write_text(json.dumps(payload, ensure_ascii=False, indent=2), encoding='utf-8')


if __name__ == '__main__':
    main()
