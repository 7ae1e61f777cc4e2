"""``generate``: text-to-image sampling throughput of TextToImageDiffusion and the UNet's share of the time.

    python tools/benchmark.py generate [--config configs/text2image/t2i_tiny_shapes.py] [--batch-size 4]
        [--steps 50] [--guidance 3] [--sampler dpm-solver] [--rounds 3] [--threads N] [--json OUT]
        [--cfg-options k=v ...]

The config's generator (random weights, eval mode, no pretrained text encoder, a synthetic vocabulary) draws
``--batch-size`` images at ``--steps`` steps with ``--guidance`` (any value but 0 and 1 runs the conditional
and the unconditional pass in one batch of 2 x batch) ``--rounds`` times after one warm-up. Each round
reports images per wall-clock second and per CPU second of the process (robust to other processes on a
shared machine) and the share of the round's wall and CPU time spent inside the UNet's forward (the rest:
the text encoder, the scheduler's updates, decoding). Output: one JSON line per round and a ``median`` line
with the min-max over rounds.
"""
import argparse
import os.path as osp
import statistics
import tempfile
import time

import torch
from mmengine.config import Config, DictAction

from .caption import write_vocab
from .common import build_model, positive_int, report_lines

DEFAULT_CONFIG = osp.join(osp.dirname(osp.abspath(__file__)), '..', '..', 'configs', 'text2image',
                          't2i_tiny_shapes.py')
TEXT = '左上角有一个红色的大圆形，右下角有一个蓝色的小三角形'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--config', default=DEFAULT_CONFIG, help='a TextToImageDiffusion config')
    parser.add_argument('--batch-size', type=positive_int, default=4, help='images per sampling call')
    parser.add_argument('--steps', type=positive_int, default=50)
    parser.add_argument('--guidance', type=float, default=3.0)
    parser.add_argument('--sampler', default='dpm-solver', choices=['dpm-solver', 'ddim', 'ddpm'])
    parser.add_argument('--rounds', type=positive_int, default=3)
    parser.add_argument('--threads', type=positive_int, default=None)
    parser.add_argument('--json', default=None, help='also write the lines to this file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})


class UNetClock:
    """Wall and CPU seconds spent inside a module's forward (a forward pre- and post-hook pair)."""

    def __init__(self, module: torch.nn.Module):
        self.wall = self.cpu = 0.0
        self.calls = 0
        module.register_forward_pre_hook(self._start)
        module.register_forward_hook(self._stop)

    def _start(self, *_):
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def _stop(self, *_):
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu
        self.calls += 1

    def reset(self) -> None:
        self.wall = self.cpu = 0.0
        self.calls = 0


def run(args: argparse.Namespace) -> int:
    if args.guidance < 0:
        raise SystemExit('--guidance must be >= 0')
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    cfg.model.pop('objective', None)
    cfg.model.pretrained = None
    if cfg.model.get('vae') is not None:
        cfg.model.vae.pretrained = None  # random weights: the time does not depend on them
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = osp.join(tmp, 'vocab.txt')
        write_vocab(vocab_file, (cfg.model.text_encoder.get('config') or {}).get('vocab_size', 21128))
        cfg.model.data_preprocessor.tokenizer = dict(vocab_file=vocab_file)
        model = build_model(cfg, torch.device('cpu')).eval()
        model.tokenizer  # noqa: B018 (built while the vocabulary exists)
    tokens = model.data_preprocessor.tokenize([TEXT] * args.batch_size)
    clock = UNetClock(model.unet)

    def sample():
        model.sample(tokens['input_ids'], tokens['attention_mask'], steps=args.steps, guidance=args.guidance,
                     sampler=args.sampler, generator=torch.Generator().manual_seed(0))

    lines = []
    with torch.inference_mode():
        sample()  # warm-up
        for round_ in range(args.rounds):
            clock.reset()
            wall, cpu = time.perf_counter(), time.process_time()
            sample()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            lines.append(dict(round=round_, images_per_s=round(args.batch_size / wall, 4),
                              images_per_cpu_s=round(args.batch_size / cpu, 4), wall_s=round(wall, 3),
                              cpu_s=round(cpu, 3), unet_calls=clock.calls,
                              unet_wall_share=round(clock.wall / wall, 4),
                              unet_cpu_share=round(clock.cpu / cpu, 4) if cpu > 0 else None))
    summary = dict(round='median', batch_size=args.batch_size, steps=args.steps, guidance=args.guidance,
                   sampler=args.sampler, image_size=model.image_size, unet_calls=lines[0]['unet_calls'])
    for key in ('images_per_s', 'images_per_cpu_s', 'wall_s', 'cpu_s', 'unet_wall_share', 'unet_cpu_share'):
        values = [line[key] for line in lines if line[key] is not None]
        summary[key] = round(statistics.median(values), 4)
        summary[f'{key}_range'] = [min(values), max(values)]
    lines.append(summary)
    report_lines(lines, args.json, config=args.config, threads=torch.get_num_threads(),
                 unet_parameters=sum(p.numel() for p in model.unet.parameters()))
    return 0
