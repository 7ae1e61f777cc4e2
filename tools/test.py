"""Evaluate a checkpoint with the config's test loop (retrieval: R@1/5/10 and R@M).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options key=value ...]
"""
import argparse
import os

from mmengine.config import DictAction

import r2d2lib  # noqa: F401
from r2d2lib.engine import StrictRunner, load_config


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test a model')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='directory for the evaluation logs')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config keys, e.g. test_cfg.top_k=64')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    runner = StrictRunner.from_cfg(cfg)
    runner.load_checkpoint(args.checkpoint)  # strict: a wrong file fails, naming the keys
    runner.test()


if __name__ == '__main__':
    main()
