"""Caption images with a trained captioner (an ImageCaptioner written by save_pretrained).

    python tools/caption.py --model work_dirs/caption_demo/model data/toy_shapes/images/test_000000.png
    python tools/caption.py --model work_dirs/caption_demo/model IMAGE... --beams 3 --out captions.jsonl

Prints ``path<TAB>caption`` per image; ``--out`` also writes JSON lines ``{"image": ..., "caption": ...}``.
Decoding: ``--beams`` (1: greedy), ``--max-length`` (tokens with [CLS] and [SEP]), ``--min-length``,
``--sample`` (nucleus sampling with ``--top-p`` and ``--temperature``), ``--repetition-penalty``; the
model's saved ``generation`` settings fill in what is not given.
"""
from __future__ import annotations

import argparse
import sys

from r2d2lib.apis.captioning import caption_images, write_captions
from r2d2lib.apis.cli import add_model_arguments, inferencer_from_args


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('images', nargs='+', metavar='IMAGE', help='image files')
    add_model_arguments(parser)
    parser.add_argument('--beams', type=int, default=None,
                        help='beam width (1: greedy; default: the model\'s)')
    parser.add_argument('--max-length', type=int, default=None, help='longest caption in tokens, >= 2')
    parser.add_argument('--min-length', type=int, default=None, help='shortest caption in tokens')
    parser.add_argument('--sample', action='store_true', default=None, help='nucleus sampling')
    parser.add_argument('--top-p', type=float, default=None, help='nucleus of --sample')
    parser.add_argument('--temperature', type=float, default=None, help='temperature of --sample')
    parser.add_argument('--repetition-penalty', type=float, default=None, help='> 1 discourages repeats')
    parser.add_argument('--out', default=None, help='also write JSON lines here')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    options = dict(beams=args.beams, max_length=args.max_length, min_length=args.min_length,
                   sample=args.sample, top_p=args.top_p, temperature=args.temperature,
                   repetition_penalty=args.repetition_penalty)
    try:
        inferencer = inferencer_from_args(args, progress=False)
        captions = caption_images(inferencer.model, args.images, batch_size=args.batch_size, **options)
    except (OSError, ValueError, TypeError, KeyError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    for image, caption in zip(args.images, captions):
        print(f'{image}\t{caption}')
    if args.out:
        print(f'wrote {write_captions(args.out, args.images, captions)}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
