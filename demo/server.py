"""Serve the web demo: load a model, embed an image folder once, answer searches and scores.

    python -m demo.server --config configs/demo/r2d2_tiny_shapes.py \
        --checkpoint work_dirs/demo/epoch_8.pth --allow-pickle \
        --images data/toy_shapes/images --glob 'test_*' --port 8000
    python -m demo.server --model <from_pretrained folder | Hub id | model-zoo name> --images <folder>

``make web-demo`` runs the first form on the demo model (training it first if needed).
Then open http://127.0.0.1:8000.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import r2d2lib  # noqa: F401  (registers the models)
from r2d2lib.apis.inferencer import R2D2Inferencer

from .app import create_app
from .service import SearchService, find_images


def log(message: str) -> None:
    print(f'[web-demo {time.strftime("%H:%M:%S")}] {message}', file=sys.stderr, flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--model', help='from_pretrained folder, Hub id or model-zoo name')
    source.add_argument('--config', help='training config (.py); needs --checkpoint')
    parser.add_argument('--checkpoint', help='checkpoint of --config (.pth / .safetensors)')
    parser.add_argument('--allow-pickle', action='store_true',
                        help='unpickle a checkpoint that weights-only loading refuses (your own files only)')
    parser.add_argument('--images', required=True, help='folder of the gallery images')
    parser.add_argument('--glob', default='*', help="file name pattern inside --images (e.g. 'test_*')")
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=8000)
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument('--batch-size', type=int, default=64, help='images per forward pass')
    args = parser.parse_args(argv)
    if args.config and not args.checkpoint:
        parser.error('--config needs --checkpoint (or use --model with a saved folder)')
    if args.model and args.checkpoint:
        parser.error('--checkpoint goes with --config; --model carries its weights')
    return args


def build_service(args: argparse.Namespace) -> SearchService:
    source = args.config or args.model
    log(f'loading {source}' + (f' with {args.checkpoint}' if args.checkpoint else ''))
    inferencer = R2D2Inferencer(source, args.checkpoint, device=args.device, batch_size=args.batch_size,
                                allow_pickle=args.allow_pickle)
    paths = find_images(Path(args.images), args.glob)
    log(f'found {len(paths)} images in {args.images} matching {args.glob!r}')
    return SearchService(inferencer, paths, log=log)


def main(argv=None) -> None:
    import uvicorn
    args = parse_args(argv)
    service = build_service(args)
    log(f'serving on http://{args.host}:{args.port}')
    uvicorn.run(create_app(service), host=args.host, port=args.port, log_level='warning')


if __name__ == '__main__':
    main()
