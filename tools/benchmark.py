"""Benchmarks of r2d2lib against the official approach, offline on synthetic inputs.

    python tools/benchmark.py train --config C --batch-size B   # training steps + AdamW: ours vs official
    python tools/benchmark.py infer --config C --batch-size B   # encode / match: ours vs ChineseCLIP
    python tools/benchmark.py eval ...                          # retrieval evaluation at scale
    python tools/benchmark.py train-step CONFIG ...             # speed, memory and leak check
    python tools/benchmark.py loss --loss tgd --batch-size 2    # queue losses at a full queue
    python tools/benchmark.py topk --chunk-sizes 256 1024 4096  # chunked top-k: time, memory
    python tools/benchmark.py official-step --config C          # official step vs ours, equal objective
    python tools/benchmark.py hard-negatives --rows 64 --candidates 2048   # vs the official loop
    python tools/benchmark.py caption --beams 1 3               # caption generation vs transformers
    python tools/benchmark.py generate --steps 50               # text-to-image: images/s, UNet's share
    python tools/benchmark.py gpu --out work_dirs/gpu/gpu.jsonl # ViT-B/L on a GPU: MFU, bf16, compile
    python tools/benchmark.py COMMAND --help

Each subcommand lives in a module of ``tools/benchmarks/`` with ``add_arguments(parser)``
and ``run(args) -> int``; only the chosen one is imported, so a module that is missing or
fails to import disables its own subcommand and no other.
"""
import argparse
import importlib
import os.path as osp
import sys
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # makes tools/benchmarks/ importable

# subcommand -> (module in tools/benchmarks/, one-line help)
SUBCOMMANDS = {
    'train': ('benchmarks.training', 'training steps with AdamW, ours (GCPR + FGR, and Eq. 8) vs the '
              'official step line for line: samples/s, peak memory, FLOPs (and TFLOP/s, MFU on a GPU)'),
    'infer': ('benchmarks.inference', 'encode_image / encode_text / match, ours vs transformers\' '
              'ChineseCLIPModel towers of the same size'),
    'eval': ('benchmarks.evaluation', 'retrieval evaluation at real size, ours vs the official dense '
             'approach'),
    'train-step': ('benchmarks.train_step', 'speed and memory of pre-training steps, with a leak check'),
    'loss': ('benchmarks.losses', 'the queue losses (TgD, MoCo) at a full queue, ours vs the code they '
             'replaced: CPU and wall seconds, live-tensor and RSS peaks'),
    'official-step': ('benchmarks.official_step', 'training step: the official GCPR + FGR step line for '
                      'line vs ours at equal objective, and our full Eq. 8 step'),
    'hard-negatives': ('benchmarks.hard_negatives', 'hard-negative draw, ours vs the official per-row '
                       'multinomial(...).item() loop: CPU and wall time'),
    'caption': ('benchmarks.caption', 'caption generation (beam 1 and 3), ImageCaptioner vs transformers\' '
                'VisionEncoderDecoderModel of the same size: captions/s'),
    'generate': ('benchmarks.generate', 'text-to-image sampling (50 steps, guidance 3): images per wall and '
                 'CPU second, the UNet\'s share of the time, repeated'),
    'gpu': ('benchmarks.gpu', 'on a GPU, ViT-B and ViT-L at real size: step samples/s and MFU (fp32, bf16, '
            'bf16 + compile, with and without checkpointing), embedding and retrieval throughput'),
    'topk': ('benchmarks.topk', 'chunked_topk (one preallocated buffer) vs the version it replaced: CPU '
             'and wall seconds, working memory against the formula of docs/evaluation.md'),
}


def build_parser(argv: List[str]) -> argparse.ArgumentParser:
    """The parser; only the subcommand named in ``argv`` gets its module imported and its options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    chosen = next((arg for arg in argv if not arg.startswith('-')), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name != chosen:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            parser.error(f'subcommand {name!r} is unavailable: tools/{module_name.replace(".", "/")}.py '
                         f'could not be imported ({err})')
        module.add_arguments(sub)
        sub.set_defaults(func=module.run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    return args.func(args)


if __name__ == '__main__':
    sys.exit(main())
