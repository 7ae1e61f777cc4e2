"""Convert Chinese-CLIP weights (a transformers folder or an original .pt file) into an r2d2lib model folder.

    python tools/convert/chinese_clip.py path/to/chinese-clip-vit-base-patch16 out/chinese_clip_vitb16
    python tools/convert/chinese_clip.py clip_cn_vit-b-16.pt out/chinese_clip_vitb16 --tokenizer TOK

SRC is either a transformers ``ChineseCLIPModel`` folder (``--format hf``: ``config.json`` and the
weights; the tower sizes, activations and eps are read from its config, the tokenizer from the folder
when it holds one), or a file: an original Chinese-CLIP checkpoint (``--format original``: ``{'state_dict':
...}`` with ``module.`` prefixes) or a ``ChineseCLIPModel`` state dict (``.bin`` / ``.safetensors``),
converted into ``--config`` (default configs/chinese_clip/chinese_clip_vitb16.py). The format is
detected from the keys unless given. Unused tensors (the BERT pooler, index buffers) are dropped by name
and listed; anything else that does not match our model key for key and shape for shape stops the
conversion with the offending names. The output is written by ``r2d2lib.io.save_pretrained`` and
loads with ``DualEncoderModel.from_pretrained(OUT_DIR)``; the source file's name is recorded in its
config.json (``converted_from``). ``--model`` (a model-zoo name) fills the model card from its
metafile entry instead of the generic Chinese-CLIP card.
"""
import argparse
from pathlib import Path

import torch

from r2d2lib.apis.model_zoo import converted_model_card
from r2d2lib.converters.building import build_converted, print_summary, save_converted
from r2d2lib.converters.chinese_clip import (
    DEFAULT_CONFIG,
    convert_chinese_clip,
    detect_format,
    inference_model_config,
    is_dropped,
    model_config_from_hf,
    unwrap_chinese_clip_state_dict,
)
from r2d2lib.converters.tokenizer import check_tokenizer, set_tokenizer
from r2d2lib.io.checkpoint import (
    CheckpointFileError,
    PickleRefusedError,
    check_state_dict_keys,
    load_checkpoint_file,
)
from r2d2lib.models.encoders.base import quiet_transformers

#: What a folder holding a tokenizer has (BertTokenizerFast.from_pretrained reads either).
TOKENIZER_MARKERS = ('vocab.txt', 'tokenizer.json')
PAPER = dict(title='Chinese CLIP: Contrastive Vision-Language Pretraining in Chinese',
             url='https://arxiv.org/abs/2211.01335')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='transformers ChineseCLIPModel folder, or a checkpoint file (.pt, .pth, '
                                    '.bin, .safetensors)')
    parser.add_argument('out_dir', help='directory to write the converted model to')
    parser.add_argument('--format', default='auto', choices=['auto', 'hf', 'original'],
                        help='source format (default: a folder is hf, a file is detected from its keys)')
    parser.add_argument('--config', default=None,
                        help=f'config file whose `model` to convert into (default {DEFAULT_CONFIG}; for a '
                             'transformers folder the tower sizes come from its config.json)')
    parser.add_argument('--model', default=None,
                        help='model-zoo name whose metafile entry fills the model card (see '
                             'r2d2lib.list_models()); default: a Chinese-CLIP card')
    parser.add_argument('--tokenizer', default=None,
                        help='tokenizer to save with the model (a local folder or Hub id, or a WordPiece '
                             'vocab.txt); default: the folder\'s own, else the config\'s '
                             '(OFA-Sys/chinese-clip-vit-base-patch16, which must be cached when offline)')
    parser.add_argument('--allow-pickle', action='store_true',
                        help='fall back to a full unpickle if the file holds more than tensors and plain '
                             'data (runs code from the file: only for files you trust)')
    return parser.parse_args(argv)


def load_hf_folder(path: Path):
    """``(state_dict, hf_config)`` of a transformers ChineseCLIPModel folder, loaded strictly."""
    from transformers import ChineseCLIPModel
    with quiet_transformers():
        model, info = ChineseCLIPModel.from_pretrained(str(path), output_loading_info=True,
                                                       ignore_mismatched_sizes=True, dtype=torch.float32)
    unexpected = [k for k in info['unexpected_keys'] if not is_dropped(k, 'hf')]
    check_state_dict_keys(info['missing_keys'], unexpected, str(path), mismatched=info['mismatched_keys'])
    return model.state_dict(), model.config


def main(argv=None) -> None:
    args = parse_args(argv)
    src = Path(args.src)
    if not src.exists():
        raise SystemExit(f'error: {src} does not exist')
    if src.is_dir() and args.format == 'original':
        raise SystemExit(f'error: {src} is a folder; --format original takes a checkpoint file')
    try:
        default = dict(title=f'Chinese-CLIP ({src.name}) for r2d2lib', paper=PAPER)
        card = converted_model_card(src, args.model, default=default)
    except KeyError as error:
        raise SystemExit(f'error: --model: {error.args[0]}') from None
    import r2d2lib  # noqa: F401  (registers every component)
    if src.is_dir():
        state_dict, hf_config = load_hf_folder(src)  # before the tokenizer: the folder is checked first
        model_cfg = model_config_from_hf(hf_config, args.config)
        source_format = 'hf'
    else:
        model_cfg = inference_model_config(args.config)
        source_format = args.format
    own_tokenizer = src.is_dir() and any((src / name).is_file() for name in TOKENIZER_MARKERS)
    set_tokenizer(model_cfg, args.tokenizer or (src.resolve() if own_tokenizer else None))
    try:
        check_tokenizer(model_cfg, "Chinese-CLIP's")
        if not src.is_dir():
            state_dict = unwrap_chinese_clip_state_dict(load_checkpoint_file(src, args.allow_pickle), src)
    except (OSError, PickleRefusedError, CheckpointFileError) as error:
        raise SystemExit(f'error: {error}') from None
    if source_format == 'auto':
        source_format = detect_format(state_dict)
    converted, dropped = convert_chinese_clip(state_dict, source_format, model_cfg, source=str(src))
    model = build_converted(model_cfg, converted)
    config = args.config or DEFAULT_CONFIG
    print_summary(f'{src} (Chinese-CLIP, {source_format} format, model config {config})', converted, dropped,
                  model)
    save_converted(model, args.out_dir, card)


if __name__ == '__main__':
    main()
