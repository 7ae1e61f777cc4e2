"""Text-to-image demo (make generate-demo, after make demo): train a small diffusion model on the toy corpus,
conditioned on the demo R2D2's text encoder, and score what it draws for the held-out captions.

    python tools/generate_demo.py [--seed 0] [--iters 600] [--demo-model work_dirs/demo/model]

The generator is configs/text2image/t2i_tiny_shapes.py (32 px, pixel space, frozen text encoder of the
demo R2D2, condition dropout 0.1). After training, one image per test image is drawn from its first
caption (200 captions, DPM-Solver++ with 10 steps, seed = --seed) at guidance 1 (the conditional model)
and 3, and scored:

- attribute accuracy (r2d2lib.datasets.toy_attributes): for each object a caption names, whether the
  named colour and shape are found in the named quadrant; chance is the same images scored against the
  caption of another test image (i + 100), measured in this run; the real test images at 32 px give the
  checker's ceiling;
- R-precision by the demo R2D2's embeddings among the 200 distinct test captions (re-ranked by its cross
  encoders in the top 16 too), chance 1/200; mean image-text similarity; the Frechet distance between
  R2D2 image embeddings of generated and real test images (Text2ImageMetric).

The generator is saved with save_pretrained into ``<work-dir>/model`` (for tools/generate.py), the numbers
into ``<work-dir>/generate_seed<N>.json`` and a grid of generated images for a few held-out captions into
``--grid`` (docs/images/generate_demo.png).
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys
import time

import torch
from mmengine.config import Config
from mmengine.model import is_model_wrapper

import r2d2lib  # noqa: F401
from r2d2lib.datasets.toy_attributes import CHANCE_COLOUR_AND_SHAPE, attribute_accuracy
from r2d2lib.datasets.toy_shapes import ensure_toy_shapes
from r2d2lib.engine import StrictRunner
from r2d2lib.evaluation.metrics.text2image import Text2ImageMetric
from r2d2lib.io.images import open_rgb
from r2d2lib.visualization.grid import result_grid

ROOT = osp.join(osp.dirname(osp.abspath(__file__)), '..')
CONFIG = osp.join(ROOT, 'configs', 'text2image', 't2i_tiny_shapes.py')
GRID_CAPTIONS = 4
GRID_IMAGES = 4


def test_captions(data: str) -> tuple:
    """(first caption of each test image, image paths), in file order."""
    captions, paths = [], []
    with open(osp.join(data, 'test_objects.jsonl'), encoding='utf-8') as f:
        for line in f:
            record = json.loads(line)
            captions.append(record['captions'][0])
            paths.append(osp.join(data, record['image_path']))
    return captions, paths


def format_rows(rows: dict) -> str:
    columns = ('colour+shape', 'colour', 'shape', 'R-prec', 'R-prec rr', 'similarity', 'Frechet')
    lines = [f'{"images":<38}' + ''.join(f'{c:>13}' for c in columns), '-' * (38 + 13 * len(columns))]
    for name, row in rows.items():
        cells = [row.get(k) for k in ('colour_and_shape', 'colour', 'shape', 'R-precision',
                                      'R-precision_reranked', 'similarity', 'frechet_r2d2')]
        lines.append(f'{name:<38}' + ''.join(f'{"-":>13}' if v is None else f'{v:>13.2f}' for v in cells))
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--iters', type=int, default=None,
                        help='training iterations (default: the config\'s)')
    parser.add_argument('--steps', type=int, default=10, help='sampling steps for the evaluation')
    parser.add_argument('--data', default='data/toy_shapes')
    parser.add_argument('--demo-model', default='work_dirs/demo/model')
    parser.add_argument('--work-dir', default='work_dirs/generate_demo')
    parser.add_argument('--grid', default='docs/images/generate_demo.png',
                        help='PNG grid of generated images')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch threads (1: the toy model is too small to share; 2 threads were 6x '
                             'slower on 2 busy cores)')
    args = parser.parse_args(argv)
    if args.iters is not None and args.iters < 2:
        parser.error(f'--iters must be >= 2 (a warm-up iteration, then the cosine), got {args.iters}')
    if not osp.isfile(osp.join(args.demo_model, 'config.json')):
        print(f'{args.demo_model} holds no saved model: run make demo first (it trains the R2D2 whose text '
              'encoder this demo conditions on)', file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    ensure_toy_shapes(args.data)
    cfg = Config.fromfile(CONFIG)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[loader].dataset
        (dataset.get('dataset') or dataset).data_root = args.data
    cfg.model.data_preprocessor.tokenizer.vocab_file = osp.join(args.data, 'vocab.txt')
    cfg.model.pretrained.source = args.demo_model
    cfg.model.sampling.seed = args.seed
    if args.iters:
        cfg.train_cfg.max_iters = args.iters
        warmup = min(cfg.param_scheduler[0].end, max(1, args.iters // 10))
        cfg.param_scheduler[0].end = cfg.param_scheduler[1].begin = warmup
        cfg.param_scheduler[1].end = args.iters
        cfg.default_hooks.checkpoint.interval = args.iters
    cfg.train_cfg.pop('val_interval', None)  # scored below (the loop would validate after its last iteration)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.work_dir = args.work_dir
    cfg.randomness.seed = args.seed

    runner = StrictRunner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    seconds = time.perf_counter() - start
    generator = runner.model.module if is_model_wrapper(runner.model) else runner.model
    generator.eval()
    generator.save_pretrained(osp.join(args.work_dir, 'model'))

    captions, paths = test_captions(args.data)
    size = generator.image_size
    real = [open_rgb(p).resize((size, size), resample=3) for p in paths]
    metric = Text2ImageMetric(evaluator=args.demo_model, rerank_k=16)
    rows, images = {}, {}
    sample_start = time.perf_counter()
    for guidance in (1.0, 3.0):
        images[guidance] = generator.generate(captions, steps=args.steps, guidance=guidance, seed=args.seed,
                                              batch_size=50, progress=True)
        row = attribute_accuracy(images[guidance], captions)
        row.update(metric.score(images[guidance], captions, real))
        rows[f'generated, guidance {guidance:g}'] = row
    sample_seconds = time.perf_counter() - sample_start
    chance = attribute_accuracy(images[3.0], captions, chance_offset=len(captions) // 2)
    chance.update({'R-precision': 100.0 / len(set(captions))})
    rows['chance (guidance 3 vs other captions)'] = chance
    ceiling = attribute_accuracy(real, captions)
    ceiling.update({k[len('real_'):]: v for k, v in rows['generated, guidance 3'].items()
                    if k.startswith('real_')})
    rows['real test images (32 px)'] = ceiling

    print(f'\nText-to-image on toy shapes, seed {args.seed}, {runner.iter} iterations ({seconds:.0f} s '
          f'training, {sample_seconds:.0f} s sampling): {len(captions)} test captions, {args.steps} '
          'DPM-Solver steps\n')
    print(format_rows(rows))
    print(f'\ncolour+shape, colour, shape: % of the {int(chance["objects"])} named objects found in their '
          f'quadrant (chance by analysis {100 * CHANCE_COLOUR_AND_SHAPE:.1f}%); R-prec: % of images whose '
          f'own caption ranks first of {len(set(captions))} by the demo R2D2 (rr: re-ranked top 16)')

    grid_captions = captions[:GRID_CAPTIONS]
    grid_images = generator.generate(grid_captions, num_images=GRID_IMAGES, steps=args.steps, guidance=3.0,
                                     seed=args.seed)
    cells, labels = [], []
    for i, caption in enumerate(grid_captions):
        cells.extend([caption, real[i]])
        labels.extend(['held-out caption', 'its test image'])
        cells.extend(grid_images[i * GRID_IMAGES:(i + 1) * GRID_IMAGES])
        labels.extend([f'guidance 3, #{k + 1}' for k in range(GRID_IMAGES)])
    if args.grid:
        os.makedirs(osp.dirname(osp.abspath(args.grid)), exist_ok=True)
        result_grid(cells, labels, columns=GRID_IMAGES + 2, cell_size=96).save(args.grid, optimize=True)
        print(f'grid (caption, its real image, then 4 generated, per held-out caption): {args.grid}')
    os.makedirs(args.work_dir, exist_ok=True)
    out = osp.join(args.work_dir, f'generate_seed{args.seed}.json')
    with open(out, 'w', encoding='utf-8') as f:
        json.dump(dict(seed=args.seed, iterations=runner.iter, train_seconds=seconds,
                       sample_seconds=sample_seconds, steps=args.steps, results=rows, torch=torch.__version__,
                       grid_captions=grid_captions), f, indent=2, ensure_ascii=False)
    print(f'results: {out}; generator: {osp.join(args.work_dir, "model")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
