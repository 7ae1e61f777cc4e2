"""Serve the web demo: load a model, embed an image folder once, answer searches and scores.

    python -m demo.server --model work_dirs/demo/model --images data/toy_shapes/images \
        --glob 'test_*' --port 8000
    python -m demo.server --model <from_pretrained folder | Hub id | model-zoo name> --images <folder>
    python -m demo.server --config CONFIG.py --checkpoint CKPT.pth --images <folder>

``make web-demo`` runs the first form: the folder ``make demo`` saves with ``save_pretrained``
(trained first if missing). A training checkpoint loads weights-only; ``--allow-pickle`` only for
a file you trust that needs a full unpickle.
Then open http://127.0.0.1:8000. Limits against hostile input (see demo/limits.py):
``--max-upload-mb`` (413 past it, before the body is read), ``--max-pixels`` (400 past it,
before the image is decoded), ``--max-concurrent`` and ``--max-waiting`` (503 past both).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import r2d2lib  # noqa: F401  (registers the models)
from r2d2lib.apis.cli import add_model_arguments, inferencer_from_args
from r2d2lib.io.images import DEFAULT_MAX_PIXELS

from .app import create_app
from .limits import DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_UPLOAD_BYTES, DEFAULT_MAX_WAITING
from .service import SearchService, find_images


def log(message: str) -> None:
    print(f'[web-demo {time.strftime("%H:%M:%S")}] {message}', file=sys.stderr, flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument('--images', required=True, help='folder of the gallery images')
    parser.add_argument('--glob', default='*', help="file name pattern inside --images (e.g. 'test_*')")
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=8000)
    parser.add_argument('--max-upload-mb', type=float, default=DEFAULT_MAX_UPLOAD_BYTES / (1 << 20),
                        help='largest upload in MiB; larger ones are answered 413 before they are read '
                             '(default: %(default)s)')
    parser.add_argument('--max-pixels', type=int, default=DEFAULT_MAX_PIXELS,
                        help='largest uploaded image in pixels (width * height); larger ones are answered '
                             '400 before they are decoded (default: %(default)s)')
    parser.add_argument('--max-concurrent', type=int, default=DEFAULT_MAX_CONCURRENT,
                        help='API requests served at once (default: %(default)s)')
    parser.add_argument('--max-waiting', type=int, default=DEFAULT_MAX_WAITING,
                        help='API requests queued beyond those; past them, 503 (default: %(default)s)')
    return parser.parse_args(argv)


def build_service(args: argparse.Namespace) -> SearchService:
    log(f'loading {args.model or args.checkpoint}')
    inferencer = inferencer_from_args(args, progress=False)
    paths = find_images(Path(args.images), args.glob)
    log(f'found {len(paths)} images in {args.images} matching {args.glob!r}')
    return SearchService(inferencer, paths, log=log)


def main(argv=None) -> None:
    import uvicorn
    args = parse_args(argv)
    service = build_service(args)
    log(f'serving on http://{args.host}:{args.port}')
    app = create_app(service, max_upload_bytes=int(args.max_upload_mb * (1 << 20)),
                     max_pixels=args.max_pixels, max_concurrent=args.max_concurrent,
                     max_waiting=args.max_waiting)
    uvicorn.run(app, host=args.host, port=args.port, log_level='warning')


if __name__ == '__main__':
    main()
