"""``caption``: generation throughput of ImageCaptioner against transformers' VisionEncoderDecoderModel.

    python tools/benchmark.py caption [--config configs/caption/caption_tiny_shapes.py] [--batch-size 8]
        [--beams 1 3] [--max-length 16] [--rounds 3] [--threads N] [--json OUT] [--cfg-options k=v ...]

Ours is the config's captioner (random weights, eval mode, ``torch.inference_mode``):
``ImageCaptioner.generate`` on a batch of synthetic images. The baseline is transformers'
``VisionEncoderDecoderModel`` of the same size, built from our parts' configs (the CLIP vision tower,
the BERT decoder with cross-attention, and its own projection when the widths differ), generating
with its own ``generate``. Both generate exactly ``--max-length`` tokens (``min_length`` equal to it),
so the random weights cannot make one stop earlier. Calls alternate (ours, baseline) over ``--rounds``;
each figure is the median over the rounds: captions per wall-clock second and per CPU second of the
process (robust to other processes on a shared machine). Output: one JSON line per beam width and
method, and a ``ratio`` line (ours / baseline) per beam width.
"""
import argparse
import os.path as osp
import statistics
import tempfile
import time

import torch
from mmengine.config import Config, DictAction

from .common import build_model, positive_int, report_lines

DEFAULT_CONFIG = osp.join(osp.dirname(osp.abspath(__file__)), '..', '..', 'configs', 'caption',
                          'caption_tiny_shapes.py')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--config', default=DEFAULT_CONFIG, help='an ImageCaptioner config')
    parser.add_argument('--batch-size', type=positive_int, default=8)
    parser.add_argument('--beams', type=positive_int, nargs='+', default=[1, 3])
    parser.add_argument('--max-length', type=positive_int, default=16,
                        help='tokens per caption, [CLS] included')
    parser.add_argument('--rounds', type=positive_int, default=3)
    parser.add_argument('--threads', type=positive_int, default=None)
    parser.add_argument('--json', default=None, help='also write the lines to this file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})


def write_vocab(path: str, vocab_size: int) -> None:
    """A WordPiece vocabulary of ``vocab_size`` tokens: BERT's special tokens, then CJK characters."""
    tokens = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
    tokens += [chr(0x4E00 + i) for i in range(vocab_size - len(tokens))]
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(tokens) + '\n')


def baseline_like(model):
    """A random-weight VisionEncoderDecoderModel whose encoder and decoder have our parts' configs."""
    from transformers import BertLMHeadModel, CLIPVisionModel, VisionEncoderDecoderModel
    vision = model.image_encoder.model.config
    decoder = BertLMHeadModel(model.text_decoder.model.config)
    return VisionEncoderDecoderModel(encoder=CLIPVisionModel(vision), decoder=decoder).eval()


def timed(call) -> tuple:
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def run(args: argparse.Namespace) -> int:
    if args.max_length < 2:
        raise SystemExit('--max-length must be >= 2')
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    cfg.model.pop('objective', None)
    cfg.model.pretrained = None
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = osp.join(tmp, 'vocab.txt')
        vocab_size = (cfg.model.text_decoder.get('config') or {}).get('vocab_size', 21128)
        write_vocab(vocab_file, vocab_size)  # synthetic: no corpus or Hub download needed
        cfg.model.data_preprocessor.tokenizer = dict(vocab_file=vocab_file)
        model = build_model(cfg, torch.device('cpu')).eval()
        tokenizer = model.tokenizer
    baseline = baseline_like(model)
    size = model.image_encoder.image_size
    pixels = torch.randn(args.batch_size, 3, size, size, generator=torch.Generator().manual_seed(0))
    lines = []
    for beams in args.beams:
        options = dict(num_beams=beams, max_length=args.max_length, min_length=args.max_length)
        calls = dict(
            ours=lambda: model.generate_ids(pixels, **options),
            vision_encoder_decoder=lambda: baseline.generate(
                pixel_values=pixels, decoder_start_token_id=tokenizer.cls_token_id,
                eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False,
                top_p=None, temperature=None, top_k=None, **options))
        times = {name: [] for name in calls}
        with torch.inference_mode():
            for name, call in calls.items():  # warm-up
                call()
            for _ in range(args.rounds):
                for name, call in calls.items():
                    times[name].append(timed(call))
        rates = {}
        for name, samples in times.items():
            wall = statistics.median(s[0] for s in samples)
            cpu = statistics.median(s[1] for s in samples)
            rates[name] = dict(captions_per_s=args.batch_size / wall,
                               captions_per_cpu_s=args.batch_size / cpu)
            lines.append(dict(method=name, beams=beams, batch_size=args.batch_size,
                              max_length=args.max_length, **{k: round(v, 3) for k, v in rates[name].items()}))
        lines.append(dict(method='ratio', beams=beams, note='ours / vision_encoder_decoder',
                          **{k: round(rates['ours'][k] / rates['vision_encoder_decoder'][k], 3)
                             for k in rates['ours']}))
    report_lines(lines, args.json, config=args.config, threads=torch.get_num_threads())
    return 0
