"""Train a model from a config with mmengine's Runner.

    python tools/train.py configs/r2d2/vitb_2.3m.py [--work-dir DIR] [--resume [CKPT]]
        [--amp] [--fsdp] [--cfg-options key=value ...] [--launcher pytorch|slurm] [--verbose]

First, in about a second and before r2d2lib is imported, the preflight (tools/preflight.py) checks
that every data path, pretrained weight, tokenizer and checkpoint the config names is there; if not,
it prints what is missing and where the docs say how to get it, and exits with code 2.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction

if osp.dirname(osp.abspath(__file__)) not in sys.path:  # loaded by path rather than run as a script
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from preflight import check_or_exit  # noqa: E402  (tools/preflight.py: imports neither torch nor r2d2lib)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='directory for logs and checkpoints '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or from the latest one in the '
                        'work dir when no path is given')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision (MixedPrecisionOptimWrapper: bf16 unless optim_wrapper.dtype)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by total batch size / auto_scale_lr.base_batch_size')
    parser.add_argument('--fsdp', action='store_true',
                        help="shard the model with torch's FSDP2 instead of DDP (distributed launchers "
                        'only; the config key fsdp sets its options, docs/distributed.md)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config keys, e.g. train_dataloader.batch_size=16')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--allow-pickle', action='store_true',
                        help='allow load_from / --resume checkpoints outside the work dir that need a full '
                        'unpickle (it can run code from the file); --resume of the run\'s own work dir needs '
                        'no opt-in')
    parser.add_argument('--verbose', action='store_true',
                        help="log at DEBUG: mmengine's environment and config dump, hook order, optimizer "
                        'options per parameter')
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def preflight(args: argparse.Namespace) -> None:
    """Exit with code 2, listing them, if files the config names for training are missing."""
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    if args.resume is not None:  # --resume: the work dir's latest checkpoint, or the one given
        cfg.load_from = None if args.resume == 'auto' else args.resume
    check_or_exit(cfg, args.config, 'train')


def build_config(args: argparse.Namespace) -> Config:
    """The config with the command-line overrides applied."""
    from r2d2lib.engine import load_config
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    if args.auto_scale_lr:  # lr x world_size * batch_size / auto_scale_lr.base_batch_size
        if not (cfg.get('auto_scale_lr') or {}).get('base_batch_size'):
            raise SystemExit(f'--auto-scale-lr: {args.config} sets no auto_scale_lr.base_batch_size '
                             '(the global batch its learning rate is for)')
        cfg.auto_scale_lr.enable = True
    if args.amp:  # bf16 unless the config or --cfg-options set optim_wrapper.dtype
        cfg.optim_wrapper.type = 'MixedPrecisionOptimWrapper'
    if getattr(args, 'fsdp', False) and cfg.get('fsdp') is None:  # the config's fsdp options, else defaults
        cfg.fsdp = dict()
    if args.allow_pickle:
        cfg.allow_pickle = True
    if args.verbose:
        cfg.log_level = 'DEBUG'
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def main() -> None:
    args = parse_args()
    preflight(args)
    import r2d2lib  # noqa: F401  (registers the components)
    from r2d2lib.engine import StrictRunner
    runner = StrictRunner.from_cfg(build_config(args))
    runner.train()


if __name__ == '__main__':
    main()
