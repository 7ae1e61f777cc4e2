"""Evaluate a checkpoint with the config's test loop; write and print the results in the paper's layout.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--dataset-name NAME] [--out-dir DIR]
        [--cfg-options key=value ...] [--launcher pytorch] [--verbose]

Retrieval configs give TR (image-to-text) and IR (text-to-image) R@1/5/10 and R@M, by embedding
similarity and re-ranked; matching configs (ICM, IQM) AUC and accuracy; zero-shot classification
configs top-1 / top-5 accuracy. The main process writes ``<dataset>_results.json`` (config,
checkpoint, metrics) and ``<dataset>_results.md`` (the table) into ``--out-dir`` (default: the
work dir) and prints the table. The dataset name defaults to the config file's name.
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import DictAction
from mmengine.dist import is_main_process

import r2d2lib  # noqa: F401
from r2d2lib.engine import StrictRunner, load_config
from r2d2lib.evaluation.report import results_markdown, write_results

if osp.dirname(osp.abspath(__file__)) not in sys.path:  # loaded by path rather than run as a script
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from preflight import check_or_exit  # noqa: E402  (tools/preflight.py)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test a model')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='directory for the evaluation logs')
    parser.add_argument('--dataset-name', help='name of the test set in the results (default: the config '
                        'file name)')
    parser.add_argument('--out-dir', help='where to write the results JSON and Markdown (default: the '
                        'work dir)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config keys, e.g. test_cfg.top_k=64')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--allow-pickle', action='store_true',
                        help='allow a checkpoint that needs a full unpickle (it can run code from the file)')
    parser.add_argument('--verbose', action='store_true',
                        help="log at DEBUG: mmengine's environment and config dump and hook order")
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    cfg.allow_pickle = args.allow_pickle
    if args.verbose:
        cfg.log_level = 'DEBUG'
    check_or_exit(cfg, args.config, 'test', args.checkpoint)  # exit 2 naming what is missing
    runner = StrictRunner.from_cfg(cfg)
    runner.load_checkpoint(args.checkpoint)  # strict: a wrong file fails, naming the keys
    metrics = runner.test()
    if is_main_process():
        dataset = args.dataset_name or osp.splitext(osp.basename(args.config))[0]
        top_k = cfg.get('test_cfg', {}).get('top_k') if cfg.get('test_cfg', {}).get('rerank', True) else None
        paths = write_results(args.out_dir or cfg.work_dir, metrics, dataset, top_k,
                              config=osp.abspath(args.config), checkpoint=osp.abspath(args.checkpoint))
        print(results_markdown(metrics, dataset, top_k))
        print(f'results: {paths["json"]}, {paths["markdown"]}')
    return metrics


if __name__ == '__main__':
    main()
