"""Generate images from a Chinese text with a trained text-to-image model and write them as one PNG grid.

    python tools/generate.py "左上角有一个红色的大圆形" --model work_dirs/generate_demo/model
    python tools/generate.py "中文描述" --model FOLDER --num 4 --steps 50 --guidance 3 --seed 0 --out grid.png

The model is a TextToImageDiffusion written by save_pretrained (make generate-demo writes one). Sampling:
``--steps`` (>= 1), ``--guidance`` (classifier-free guidance scale, >= 0; 1 is the conditional model alone),
``--sampler`` (dpm-solver, ddim, ddpm), ``--seed`` (same seed, same images), ``--image-size`` (a multiple of
the UNet's downsampling); the model's saved ``sampling`` settings fill in what is not given.
"""
from __future__ import annotations

import argparse
import sys

from r2d2lib.apis.cli import add_model_arguments, inferencer_from_args
from r2d2lib.apis.generation import generate_images, write_grid
from r2d2lib.models.generators.diffusion import SAMPLERS


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('texts', nargs='+', metavar='TEXT', help='Chinese descriptions (one grid row each)')
    add_model_arguments(parser)
    parser.add_argument('--num', type=int, default=4, help='images per text')
    parser.add_argument('--steps', type=int, default=None, help='sampling steps (default: the model\'s)')
    parser.add_argument('--guidance', type=float, default=None, help='guidance scale (default: the model\'s)')
    parser.add_argument('--sampler', choices=sorted(SAMPLERS), default=None, help='default: the model\'s')
    parser.add_argument('--seed', type=int, default=None, help='default: the model\'s')
    parser.add_argument('--image-size', type=int, default=None, help='side in pixels (default: the model\'s)')
    parser.add_argument('--out', default='grid.png', help='PNG grid: one row per text')
    parser.add_argument('--cell-size', type=int, default=None,
                        help='grid cell side (default: image side, >= 64)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.cell_size is not None and args.cell_size < 16:  # checked before minutes of sampling
        print(f'error: --cell-size must be >= 16, got {args.cell_size}', file=sys.stderr)
        return 2
    try:
        inferencer = inferencer_from_args(args, progress=False)
        images = generate_images(inferencer.model, args.texts, num_images=args.num, steps=args.steps,
                                 guidance=args.guidance, sampler=args.sampler, seed=args.seed,
                                 image_size=args.image_size, batch_size=args.batch_size,
                                 progress=not args.quiet)
    except (OSError, ValueError, TypeError, KeyError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    labels = [f'{text[:24]} #{k + 1}' for text in args.texts for k in range(args.num)]
    try:
        out = write_grid(images, args.out, columns=args.num, labels=labels, cell_size=args.cell_size)
    except OSError as error:
        print(f'error: cannot write {args.out}: {error}', file=sys.stderr)
        return 2
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
