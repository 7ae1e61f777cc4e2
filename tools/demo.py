"""The embedded demo: generate the toy-shapes corpus, train a tiny R2D2 on CPU, print retrieval.

    python tools/demo.py [--epochs 16] [--data data/toy_shapes] [--work-dir work_dirs/demo]

Prints R@1/5/10 both ways and R@M, by embedding similarity alone and re-ranked by
the cross encoders, next to what random ranking would score.
"""
import argparse
import json
import os.path as osp
from math import comb

from mmengine.config import Config

import r2d2lib  # noqa: F401
from r2d2lib.datasets.toy_shapes import ensure_toy_shapes
from r2d2lib.engine import StrictRunner

CONFIG = osp.join(osp.dirname(__file__), '..', 'configs', 'demo', 'r2d2_tiny_shapes.py')
KS = (1, 5, 10)


def chance_recalls(num_images: int, num_texts: int) -> dict:
    """Expected R@k (percent) of a random ranking; each image has num_texts / num_images captions."""
    per_image = num_texts // num_images
    out = {}
    for k in KS:
        out[f'i2t_R@{k}'] = 100 * (1 - comb(num_texts - per_image, k) / comb(num_texts, k))
        out[f't2i_R@{k}'] = 100 * min(k, num_images) / num_images
    out['R@M'] = sum(out.values()) / len(out)
    return out


def format_table(rows: dict) -> str:
    """Rows of recalls (name -> metric dict) as a fixed-width text table."""
    cols = [f'i2t_R@{k}' for k in KS] + [f't2i_R@{k}' for k in KS] + ['R@M']
    header = f'{"ranking":<22}' + ''.join(f'{c:>11}' for c in cols)
    lines = [header, '-' * len(header)]
    for name, values in rows.items():
        lines.append(f'{name:<22}' + ''.join(f'{values[c]:>11.2f}' for c in cols))
    return '\n'.join(lines)


def build_config(args: argparse.Namespace) -> Config:
    """The demo config pointed at the generated data and the command-line settings."""
    cfg = Config.fromfile(CONFIG)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = args.data
    cfg.model.data_preprocessor.tokenizer.vocab_file = osp.join(args.data, 'vocab.txt')
    cfg.work_dir = args.work_dir
    cfg.randomness.seed = args.seed
    cfg.train_cfg.max_epochs = args.epochs
    cfg.train_cfg.val_interval = args.val_interval
    cfg.param_scheduler[-1].end = args.epochs
    cfg.default_hooks.checkpoint.interval = args.epochs
    cfg.default_hooks.logger.interval = 1000  # the config's progress bar shows the losses
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data', default='data/toy_shapes', help='toy corpus folder (made if missing)')
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--epochs', type=int, default=16)
    parser.add_argument('--val-interval', type=int, default=4, help='evaluate every N epochs')
    parser.add_argument('--num-train', type=int, default=2000, help='training images')
    parser.add_argument('--num-test', type=int, default=200, help='test images')
    parser.add_argument('--seed', type=int, default=0, help='training seed (the corpus keeps seed 0)')
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error('--epochs must be at least 2 (one warm-up epoch, then cosine decay)')

    summary = ensure_toy_shapes(args.data, num_train=args.num_train, num_test=args.num_test,
                                image_size=64, seed=0)
    print(f'toy corpus: {summary["num_train_images"]} train / {summary["num_test_images"]} test '
          f'images in {args.data}')
    runner = StrictRunner.from_cfg(build_config(args))
    runner.train()
    metrics = {k.split('/', 1)[1]: v for k, v in runner.test().items()}

    rows = {
        'chance': chance_recalls(summary['num_test_images'], summary['num_test_texts']),
        'embedding similarity': {k: v for k, v in metrics.items() if not k.startswith('rerank_')},
        f're-ranked (top {runner.cfg.test_cfg.top_k})': {
            k[len('rerank_'):]: v for k, v in metrics.items() if k.startswith('rerank_')},
    }
    table = format_table(rows)
    print(f'\nR2D2 tiny on toy shapes, {args.epochs} epochs: retrieval on the test split (%)\n')
    print(table)
    with open(osp.join(args.work_dir, 'demo_results.json'), 'w') as f:
        json.dump(rows, f, indent=2)
    print(f'\nresults: {osp.join(args.work_dir, "demo_results.json")}')


if __name__ == '__main__':
    main()
