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
conversion with the offending names. The output is written by ``r2d2lib.apis.hub.save_pretrained`` and
loads with ``DualEncoderModel.from_pretrained(OUT_DIR)``.
"""
import argparse
from pathlib import Path

import torch

from r2d2lib.apis.hub import save_pretrained
from r2d2lib.converters.checkpoint_files import PickleRefusedError, check_tokenizer, load_checkpoint_file
from r2d2lib.converters.chinese_clip import (
    DEFAULT_CONFIG,
    build_inference_model,
    convert_chinese_clip,
    detect_format,
    inference_model_config,
    is_dropped,
    model_config_from_hf,
    temperature_of,
    unwrap_chinese_clip_state_dict,
)
from r2d2lib.converters.official_r2d2 import load_converted
from r2d2lib.models.encoders.base import check_state_dict_keys, quiet_transformers

#: What a folder holding a tokenizer has (BertTokenizerFast.from_pretrained reads either).
TOKENIZER_MARKERS = ('vocab.txt', 'tokenizer.json')


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


def tokenizer_config(args: argparse.Namespace, src: Path) -> dict | None:
    """The tokenizer entry to configure, or None to keep the config's."""
    if args.tokenizer is not None:
        key = 'vocab_file' if Path(args.tokenizer).is_file() else 'name_or_path'
        return {key: args.tokenizer}
    if src.is_dir() and any((src / name).is_file() for name in TOKENIZER_MARKERS):
        return {'name_or_path': str(src.resolve())}
    return None


def main(argv=None) -> None:
    args = parse_args(argv)
    src = Path(args.src)
    if not src.exists():
        raise SystemExit(f'error: {src} does not exist')
    if src.is_dir() and args.format == 'original':
        raise SystemExit(f'error: {src} is a folder; --format original takes a checkpoint file')
    import r2d2lib  # noqa: F401  (registers every component)
    if src.is_dir():
        state_dict, hf_config = load_hf_folder(src)  # before the tokenizer: the folder is checked first
        model_cfg = model_config_from_hf(hf_config, args.config)
        source_format = 'hf'
    else:
        model_cfg = inference_model_config(args.config)
        source_format = args.format
    tokenizer = tokenizer_config(args, src)
    if tokenizer is not None:
        dp_cfg = model_cfg.get('data_preprocessor') or dict(type='ImageTextDataPreprocessor')
        model_cfg['data_preprocessor'] = dict(dp_cfg, tokenizer=tokenizer)
    try:
        check_tokenizer(model_cfg, "Chinese-CLIP's")
        if not src.is_dir():
            state_dict = unwrap_chinese_clip_state_dict(load_checkpoint_file(src, args.allow_pickle))
    except (OSError, PickleRefusedError) as error:
        raise SystemExit(f'error: {error}') from None
    if not src.is_dir():
        if source_format == 'auto':
            source_format = detect_format(state_dict)
    converted, dropped = convert_chinese_clip(state_dict, source_format, model_cfg, source=str(src))
    # the config's initial temperature says what the checkpoint holds (its tensor is loaded anyway)
    model_cfg['contrastive_loss'] = dict(model_cfg['contrastive_loss'],
                                         temperature=float(f'{temperature_of(converted):.6g}'))
    model = load_converted(build_inference_model(model_cfg), converted)
    params = sum(p.numel() for p in model.parameters())
    print(f'{src} (Chinese-CLIP, {source_format} format, model config {args.config or DEFAULT_CONFIG}):')
    print(f'  tensors mapped: {len(converted)}')
    print(f'  dropped by name (unused): {len(dropped)}')
    for name in dropped:
        print(f'    {name}')
    tau = temperature_of(converted)
    print(f'  temperature: {tau:.6g} (scale 1/tau = {1 / tau:.4g})')
    print(f'  parameters: {params:,} ({type(model).__name__})')
    out_dir = Path(args.out_dir)
    save_pretrained(model, out_dir, model_config=model_cfg, model_card=dict(
        title=f'Chinese-CLIP ({src.name}) for r2d2lib',
        paper=dict(title='Chinese CLIP: Contrastive Vision-Language Pretraining in Chinese',
                   url='https://arxiv.org/abs/2211.01335')))
    print(f'wrote {out_dir}: {", ".join(sorted(p.name for p in out_dir.iterdir()))}')


if __name__ == '__main__':
    main()
