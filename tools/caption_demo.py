"""Captioning demo (make caption-demo, after make demo): train the decoder on the toy corpus from the demo
model's image encoder and score it on the test split next to two baselines measured in the same run.

    python tools/caption_demo.py [--seed 0] [--epochs 12] [--demo-model work_dirs/demo/model]

The captioner is configs/caption/caption_tiny_shapes.py: the demo R2D2's image encoder (frozen), its
tokens with 2-D positions added (PositionalTokenProjection), and a 2-layer BERT decoder initialised from
its text encoder (BLIP-style), trained with the LM loss. The test split's 200 images are captioned
greedily and with beam search (3 beams) and scored with CaptionMetric (BLEU-1..4, METEOR when Java is
present, ROUGE-L, CIDEr-D on jieba words) against their 2 captions, beside:

- nearest training image: the first caption of the training image closest to the test image by the demo
  R2D2's image embeddings (retrieval captioning);
- most frequent caption: the training caption that occurs most often (the first of those), for every image.

The trained captioner is saved with save_pretrained into ``<work-dir>/model`` (for tools/caption.py and
R2D2Inferencer.caption), the numbers into ``<work-dir>/caption_seed<N>.json`` and the first ``--png-images``
test images beside their generated caption, the nearest training image's and a reference into
``<work-dir>/caption_seed<N>.png`` (tools/caption_grid.py; Chinese needs a CJK font, see there).
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys
import time
from collections import Counter

import torch
import transformers
from mmengine.config import Config
from mmengine.model import is_model_wrapper

import r2d2lib  # noqa: F401
from r2d2lib.apis import R2D2Inferencer, load_model
from r2d2lib.apis.captioning import caption_images
from r2d2lib.engine import StrictRunner
from r2d2lib.evaluation.metrics.caption import CaptionMetric

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from caption_grid import write_caption_grid  # noqa: E402  (tools/caption_grid.py)

ROOT = osp.join(osp.dirname(osp.abspath(__file__)), '..')
CONFIG = osp.join(ROOT, 'configs', 'caption', 'caption_tiny_shapes.py')
COLUMNS = ('BLEU-1', 'BLEU-4', 'METEOR', 'ROUGE-L', 'CIDEr-D')


def read_pairs(path: str) -> dict:
    """image path -> its captions, in file order (the toy corpus's JSON lines)."""
    images: dict = {}
    with open(path, encoding='utf-8') as f:
        for line in f:
            record = json.loads(line)
            images.setdefault(record['image_path'], []).append(record['text'])
    return images


def score(predictions: list, references: list) -> dict:
    """CaptionMetric's scores (without the prefix) of one caption per test image."""
    metric = CaptionMetric(prefix=None)
    metric.process(None, [dict(image_idx=i, pred_caption=p, gt_captions=r)
                          for i, (p, r) in enumerate(zip(predictions, references))])
    return metric.compute_metrics(metric.results)


def format_table(rows: dict) -> str:
    columns = [c for c in COLUMNS if any(c in r for r in rows.values())]
    lines = [f'{"captions":<28}' + ''.join(f'{c:>10}' for c in columns), '-' * (28 + 10 * len(columns))]
    for name, values in rows.items():
        lines.append(f'{name:<28}' + ''.join(f'{values[c]:>10.2f}' for c in columns))
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--epochs', type=int, default=None, help='default: the config\'s')
    parser.add_argument('--data', default='data/toy_shapes')
    parser.add_argument('--demo-model', default='work_dirs/demo/model')
    parser.add_argument('--work-dir', default='work_dirs/caption_demo')
    parser.add_argument('--png-images', type=int, default=8, help='test images in the PNG (0: none)')
    args = parser.parse_args(argv)
    if not osp.isfile(osp.join(args.demo_model, 'config.json')):
        print(f'{args.demo_model} holds no saved model: run make demo first (it trains the R2D2 whose image '
              'encoder this demo captions with)', file=sys.stderr)
        return 2
    cfg = Config.fromfile(CONFIG)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[loader].dataset
        (dataset.get('dataset') or dataset).data_root = args.data
    cfg.model.data_preprocessor.tokenizer.vocab_file = osp.join(args.data, 'vocab.txt')
    cfg.model.pretrained.source = args.demo_model
    if args.epochs:
        cfg.train_cfg.max_epochs = cfg.train_cfg.val_interval = args.epochs
        cfg.param_scheduler[-1].end = args.epochs
        cfg.default_hooks.checkpoint.interval = args.epochs
    cfg.train_cfg.val_interval = 10**6  # scored below, with the baselines
    cfg.work_dir = args.work_dir
    cfg.randomness.seed = args.seed
    cfg.randomness.deterministic = True
    cfg.default_hooks.logger.interval = 100

    runner = StrictRunner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    seconds = time.perf_counter() - start
    captioner = runner.model.module if is_model_wrapper(runner.model) else runner.model
    captioner.eval()
    captioner.save_pretrained(osp.join(args.work_dir, 'model'))

    train = read_pairs(osp.join(args.data, 'train.jsonl'))
    test = read_pairs(osp.join(args.data, 'test.jsonl'))
    resolve = lambda path: path if osp.isabs(path) else osp.join(args.data, path)  # noqa: E731
    test_paths = [resolve(p) for p in test]
    references = list(test.values())
    greedy = caption_images(captioner, test_paths, batch_size=50, beams=1)
    generated = caption_images(captioner, test_paths, batch_size=50, beams=3)

    retrieval = R2D2Inferencer(load_model(args.demo_model), device='cpu', batch_size=200)
    train_paths = list(train)
    similarity = retrieval.encode_images(test_paths) @ retrieval.encode_images([resolve(p) for p in
                                                                                train_paths]).T
    nearest = [train[train_paths[j]][0] for j in similarity.argmax(1).tolist()]
    counts = Counter(caption for captions in train.values() for caption in captions)
    frequent = max(counts, key=lambda caption: counts[caption])  # the first of the most frequent

    rows = {'generated (greedy)': score(greedy, references),
            'generated (beam 3)': score(generated, references),
            'nearest training image': score(nearest, references),
            'most frequent caption': score([frequent] * len(references), references)}
    print(f'\nCaptioning on toy shapes, seed {args.seed}, {runner.iter} iterations ({seconds:.0f} s): test '
          f'split, {len(references)} images\n')
    print(format_table(rows))
    print('\nexamples (generated | nearest training image | references):')
    for i in range(3):
        print(f'  {generated[i]} | {nearest[i]} | {" / ".join(references[i])}')
    os.makedirs(args.work_dir, exist_ok=True)
    if args.png_images > 0:
        shown = range(min(args.png_images, len(test_paths)))
        write_caption_grid(osp.join(args.work_dir, f'caption_seed{args.seed}.png'),
                           [test_paths[i] for i in shown],
                           [[f'生成: {generated[i]}', f'最近邻: {nearest[i]}', f'参考: {references[i][0]}']
                            for i in shown])
    out = osp.join(args.work_dir, f'caption_seed{args.seed}.json')
    with open(out, 'w', encoding='utf-8') as f:
        json.dump(dict(seed=args.seed, iterations=runner.iter, seconds=seconds, results=rows,
                       most_frequent_caption=frequent, torch=torch.__version__,
                       transformers=transformers.__version__,
                       examples=[dict(generated=g, nearest=n, references=r)
                                 for g, n, r in zip(generated[:10], nearest[:10], references[:10])]),
                  f, indent=2, ensure_ascii=False)
    print(f'\nresults: {out}; captioner: {osp.join(args.work_dir, "model")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
