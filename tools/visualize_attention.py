"""Where does an entity of the text look in the image? The paper's entity-conditioned attention (Fig. 2).

    python tools/visualize_attention.py IMAGE TEXT --entity WORD [--layer N] --out attention.png \
        (--model NAME_OR_FOLDER | --checkpoint CKPT [--config CFG] [--allow-pickle])
    python tools/visualize_attention.py --toy-check data/toy_shapes --layer 2 \
        --checkpoint work_dirs/demo/epoch_8.pth --allow-pickle
    python tools/visualize_attention.py data/toy_shapes_objects/images/test_000026.png \
        有一个红色的小圆形 --entity 红色的小圆形 --layer 1 --model work_dirs/demo_objects/model

The map is the cross-attention of the entity's tokens over the image patches in layer
``--layer`` of the text-image cross encoder, averaged over heads and over the entity's tokens,
[CLS] excluded, laid out on the patch grid, upsampled and overlaid on the image. The default
layer is the paper's (the 3rd of 6), or the model's last one if it has fewer: layer 2 for the
demo's 2-layer cross encoders. A ``--layer`` the model does not have is an error naming the valid
ones. The entity must occur in the text (``--occurrence`` picks a later appearance). On the
attention demo (``make attention-demo``) layer 1 is the one that localises (docs/inference.md).

``--toy-check DATA`` measures instead, over a toy-shapes split, how often the attention of an
object's phrase (e.g. 红色的大圆形) puts more weight inside that object's box than inside the
other object's (see r2d2lib/visualization/toy_check.py), and prints the fractions as JSON;
``--toy-text entity`` gives the model the phrase alone instead of the caption.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image

from r2d2lib.apis.cli import add_model_arguments, inferencer_from_args
from r2d2lib.apis.inferencer import load_image
from r2d2lib.visualization import entity_attention, overlay_heatmap
from r2d2lib.visualization.attention import PAPER_LAYER, text_image_layers
from r2d2lib.visualization.toy_check import TEXT_MODES, measure_entity_localisation


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('image', nargs='?', type=Path, help='the image')
    parser.add_argument('text', nargs='?', help='the text (Chinese)')
    parser.add_argument('--entity', help='a word or phrase of TEXT')
    parser.add_argument('--occurrence', type=int, default=1, help='which appearance of the entity in TEXT')
    parser.add_argument('--layer', type=int, default=None,
                        help=f'text-image cross-encoder layer, 1-based (default {PAPER_LAYER}, as the paper, '
                        'or the last layer of a model with fewer)')
    parser.add_argument('--out', type=Path, default=Path('attention.png'), help='PNG to write')
    parser.add_argument('--alpha', type=float, default=0.5, help='heatmap opacity')
    parser.add_argument('--toy-check', type=Path, metavar='DATA',
                        help='measure the localisation over a toy-shapes corpus instead of drawing')
    parser.add_argument('--split', default='test', help='--toy-check: split to measure')
    parser.add_argument('--limit', type=int, default=None, help='--toy-check: first N images only')
    parser.add_argument('--toy-text', choices=TEXT_MODES, default='caption',
                        help="--toy-check: the text given with the image: the caption naming the object, "
                        "or the object's phrase alone (the paper's image-entity pair)")
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    if args.toy_check is None:
        if args.image is None or args.text is None or args.entity is None:
            parser.error('give IMAGE TEXT --entity WORD (or --toy-check DATA)')
        if not args.image.is_file():
            parser.error(f'IMAGE {args.image} does not exist')
    elif args.image is not None:
        parser.error('--toy-check measures a corpus: give no IMAGE / TEXT')
    return args


def side_by_side(image: Image.Image, overlay: Image.Image) -> Image.Image:
    """The image (enlarged as the overlay) beside the overlay."""
    left = image.convert('RGB').resize(overlay.size, Image.NEAREST)
    canvas = Image.new('RGB', (overlay.width * 2 + 8, overlay.height), (255, 255, 255))
    canvas.paste(left, (0, 0))
    canvas.paste(overlay, (overlay.width + 8, 0))
    return canvas


def main(argv=None) -> None:
    args = parse_args(argv)
    inferencer = inferencer_from_args(args)
    model = inferencer.model
    if args.layer is None:  # the paper's layer, or the closest one a shallower model has
        args.layer = min(PAPER_LAYER, text_image_layers(model))
    if args.toy_check is not None:
        result = measure_entity_localisation(model, args.toy_check, args.split, args.layer, args.limit,
                                             batch_size=args.batch_size, text=args.toy_text)
        print(json.dumps(result, indent=2))
        return
    try:
        image = load_image(args.image)
        attention = entity_attention(model, image, args.text, args.entity, args.layer, args.occurrence)
    except ValueError as error:  # entity not in the text, layer out of range: a message, not a trace
        raise SystemExit(f'error: {error}') from error
    overlay = overlay_heatmap(image, attention.grid, alpha=args.alpha)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    side_by_side(image, overlay).save(args.out)
    tokens = model.tokenize([args.text])['input_ids'][0, attention.token_positions]
    rows, cols = attention.grid.shape
    peak = int(attention.grid.argmax())
    token_text = ' '.join(inferencer.tokenizer.convert_ids_to_tokens(tokens.tolist()))
    print(f'entity {args.entity!r}: tokens {attention.token_positions} ({token_text}), '
          f'layer {attention.layer}; '
          f'{rows}x{cols} patch grid, peak at row {peak // cols}, column {peak % cols} '
          f'({float(attention.grid.max()):.3f} of the attention); written {args.out}')


if __name__ == '__main__':
    main()
