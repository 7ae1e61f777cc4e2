"""Convert an official R2D2 / PRD2 checkpoint (a PyTorch pickle) into an r2d2lib model directory.

    python tools/convert/official_r2d2.py r2d2_pretrain_250m.pth out/r2d2_vitl_250m --arch r2d2_vitl \
        --model r2d2_vitl_250m
    python tools/convert/official_r2d2.py prd2_pretrain_250m.pth out/prd2_vitl_250m --arch prd2_vitl

Every official tensor is renamed to our names (see docs/converters.md); the few the official
model never uses are dropped by name and listed; anything else that does not match our model
key for key and shape for shape stops the conversion with the offending names. The file is
read with ``torch.load(weights_only=True)``; a checkpoint that needs a full unpickle is refused
unless ``--allow-pickle`` is given (unpickling can run arbitrary code: only for trusted files).
Fine-tuned retrieval and matching checkpoints convert with the ``r2d2_*`` arch of their ViT.
``--model`` (a model-zoo name) fills the model card from its metafile entry; the source file's
name is recorded in config.json (``converted_from``) for ``tools/publish_to_hub.py``.
"""
import argparse
from pathlib import Path

from r2d2lib.apis.model_zoo import converted_model_card
from r2d2lib.converters.building import build_converted, print_summary, save_converted
from r2d2lib.converters.official_r2d2 import ARCH_CONFIGS, convert_official_state_dict, inference_model_config
from r2d2lib.converters.tokenizer import check_tokenizer, set_tokenizer
from r2d2lib.io.checkpoint import CheckpointFileError, PickleRefusedError, load_checkpoint_file


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official checkpoint (.pth)')
    parser.add_argument('out_dir', help='directory to write the converted model to')
    parser.add_argument('--arch', required=True, choices=sorted(ARCH_CONFIGS),
                        help='architecture of the checkpoint')
    parser.add_argument('--config', default=None,
                        help='config file whose `model` to convert into (default: per arch, '
                             + ', '.join(f'{k}: {v}' for k, v in ARCH_CONFIGS.items()) + ')')
    parser.add_argument('--model', default=None,
                        help='model-zoo name of the checkpoint (see r2d2lib.list_models()), whose metafile '
                             'entry fills the model card (paper, results, ...); default: a generic card')
    parser.add_argument('--tokenizer', default=None,
                        help='tokenizer to configure instead of the config\'s (a local folder or Hub id, '
                             'or a WordPiece vocab.txt), e.g. when the Hub one is not cached offline')
    parser.add_argument('--allow-pickle', action='store_true',
                        help='fall back to a full unpickle if the file holds more than tensors and '
                             'plain data (runs code from the file: only for files you trust)')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if not Path(args.src).is_file():
        raise SystemExit(f'error: {args.src} is not a file')
    try:
        card = converted_model_card(args.src, args.model)
    except KeyError as error:
        raise SystemExit(f'error: --model: {error.args[0]}') from None
    if args.model is not None:
        from r2d2lib.apis.model_zoo import get_model_info
        arch = get_model_info(args.model)['Metadata']['Arch']
        if arch != args.arch:
            raise SystemExit(f'error: --model {args.model} is a {arch} checkpoint, not --arch {args.arch}')
    model_cfg = set_tokenizer(inference_model_config(args.arch, args.config), args.tokenizer)
    try:
        check_tokenizer(model_cfg, "chinese-roberta-wwm-ext's")  # before the long part
        checkpoint = load_checkpoint_file(args.src, args.allow_pickle)
    except (OSError, PickleRefusedError, CheckpointFileError) as error:
        raise SystemExit(f'error: {error}') from None
    converted, dropped = convert_official_state_dict(checkpoint, args.arch, model_cfg, source=args.src)
    model = build_converted(model_cfg, converted)
    print_summary(f'{args.src} ({args.arch}, model config {args.config or ARCH_CONFIGS[args.arch]})',
                  converted, dropped, model, dropped_reason='unused by the official model')
    save_converted(model, args.out_dir, card)


if __name__ == '__main__':
    main()
