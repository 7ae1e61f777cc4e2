"""The embedded demo: generate the toy-shapes corpus, train a tiny R2D2 on CPU, print retrieval.

    python tools/demo.py [--epochs 8] [--data data/toy_shapes] [--work-dir work_dirs/demo]
    python tools/demo.py --ablation [--variants r2d2 r2d2_clip wo_twd ...]
    python tools/demo.py --amp bf16 [--seed 1]      # mixed precision (configs/demo/*_bf16.py)
    python tools/demo.py --captions objects     # the attention demo (docs/inference.md)
    python tools/demo.py --verbose              # also mmengine's environment and config dump (DEBUG)

Prints R@1/5/10 both ways and R@M, by embedding similarity alone and re-ranked by
the cross encoders, next to what random ranking would score, and the twin test: for each
test caption whose image has a swapped twin (the same words, attributes bound the other
way), how often its own image ranks above the twin, by embeddings and after re-ranking. ``--ablation`` trains
the variants of the paper's Table 3 (configs/demo/) one after another with the same
data, seed and schedule and prints their comparison, with training speed.

The demo also measures where the text-image cross encoder looks
(r2d2lib/visualization/toy_check.py): how often an object's phrase puts more attention
inside its own box than inside the other shape's, per layer. ``--captions objects``
trains configs/demo/r2d2_tiny_shapes_objects.py on one caption per object
(data/toy_shapes_objects, 2,000 iterations), the corpus on which that attention localises
(docs/inference.md).
"""
import argparse
import json
import os
import os.path as osp
import platform
import shlex
import subprocess
import sys
import time
from importlib import import_module
from math import comb

import torch
from mmengine.config import Config
from mmengine.model import is_model_wrapper

import r2d2lib  # noqa: F401
from r2d2lib.datasets.toy_shapes import CAPTION_STYLES, ensure_toy_shapes
from r2d2lib.engine import StrictRunner
from r2d2lib.io.images import open_rgb
from r2d2lib.models.vlp import R2D2Model
from r2d2lib.visualization.toy_check import load_objects, measure_entity_localisation_per_layer

CONFIG_DIR = osp.join(osp.dirname(__file__), '..', 'configs', 'demo')
# Table 3's rows -> demo configs (configs/demo/<file>.py)
VARIANTS = {
    'r2d2': ('R2D2', 'r2d2_tiny_shapes'),
    'r2d2_clip': ('R2D2-CLIP', 'r2d2_clip_tiny_shapes'),
    'wo_et': ('R2D2 w/o ET', 'r2d2_wo_et_tiny_shapes'),
    'wo_twd': ('R2D2 w/o TwD', 'r2d2_wo_twd_tiny_shapes'),
    'wo_tgd': ('R2D2 w/o TgD', 'r2d2_wo_tgd_tiny_shapes'),
    'wo_fgd': ('R2D2 w/o FgD', 'r2d2_wo_fgd_tiny_shapes'),
}
# --captions -> the config of the demo (configs/demo/<file>.py)
DEMO_CONFIGS = {'scene': 'r2d2_tiny_shapes', 'objects': 'r2d2_tiny_shapes_objects'}
KS = (1, 5, 10)
AMP_DTYPES = {'bf16': 'bfloat16', 'fp16': 'float16'}


# the packages whose versions a result depends on (docs/reproducibility.md); the rest are in the lock
VERSIONED = ('torch', 'transformers', 'numpy', 'mmengine')


def git_commit(repo: str = osp.join(osp.dirname(osp.abspath(__file__)), '..')) -> str | None:
    """The r2d2lib checkout's commit, ``+dirty`` if tracked files differ from it; None without git."""
    try:
        commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=repo, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=repo,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ('+dirty' if dirty else '') if commit else None


def environment(argv: list | None = None) -> dict:
    """What produced a result: the command, python, the versions of ``VERSIONED`` as imported (torch's
    with its build tag, e.g. ``2.14.1+cu130``), r2d2lib's commit."""
    argv = sys.argv if argv is None else argv
    versions = {name: getattr(import_module(name), '__version__', None) for name in VERSIONED}
    return dict(command=shlex.join(['python', *argv]), python=platform.python_version(), **versions,
                r2d2lib_commit=git_commit(), platform=platform.platform())


def format_environment(env: dict) -> str:
    """One line naming the versions and the command, as under the README's tables."""
    versions = ', '.join(f'{name} {env[name]}' for name in ('python', *VERSIONED))
    commit, _, dirty = (env['r2d2lib_commit'] or 'unknown').partition('+')
    return f'{versions}, r2d2lib {commit[:12]}{"+" + dirty if dirty else ""}: `{env["command"]}`'


def chance_recalls(num_images: int, num_texts: int) -> dict:
    """Expected R@k (percent) of a random ranking; each image has num_texts / num_images captions."""
    per_image = num_texts // num_images
    out = {}
    for k in KS:
        miss = comb(num_texts - per_image, k) / comb(num_texts, k) if k <= num_texts else 0.0
        out[f'i2t_R@{k}'] = 100 * (1 - miss)
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


def build_config(args: argparse.Namespace, config: str = 'r2d2_tiny_shapes',
                 work_dir: str | None = None) -> Config:
    """A demo config pointed at the generated data and the command-line settings."""
    cfg = Config.fromfile(osp.join(CONFIG_DIR, config + '.py'))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = args.data
    cfg.model.data_preprocessor.tokenizer.vocab_file = osp.join(args.data, 'vocab.txt')
    cfg.work_dir = work_dir or args.work_dir
    cfg.randomness.seed = args.seed
    # Bit-identical reruns (docs/reproducibility.md): torch.use_deterministic_algorithms. Without it,
    # the backward of advanced indexing (index_put_ with accumulate) adds in thread order on CPU.
    cfg.randomness.deterministic = True
    os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')  # what deterministic cuBLAS needs
    cfg.train_cfg.max_epochs = args.epochs
    cfg.train_cfg.val_interval = args.val_interval or cfg.train_cfg.val_interval
    cfg.param_scheduler[-1].end = args.epochs
    cfg.default_hooks.checkpoint.interval = args.epochs
    cfg.default_hooks.logger.interval = 1000  # the config's progress bar shows the losses
    cfg.log_level = 'DEBUG' if args.verbose else cfg.log_level
    if args.amp != 'fp32':  # the one-line switch of configs/demo/r2d2_tiny_shapes_bf16.py
        cfg.optim_wrapper.type = 'MixedPrecisionOptimWrapper'
        cfg.optim_wrapper.dtype = AMP_DTYPES[args.amp]
    return cfg


def entity_localisation(model, data: str) -> dict:
    """Own-box win fractions of the entity attention per text-image layer ('layer N' -> percent)."""
    per_layer = measure_entity_localisation_per_layer(model.eval(), data, progress=False)
    return {f'layer {layer}': dict(pairs=r['pairs'], own_box_wins=100 * r['mass_win'],
                                   red_circles=100 * r['red_circle_mass_win'])
            for layer, r in per_layer.items()}


def twin_wins(sims: torch.Tensor, true_image: torch.Tensor, twin_image: torch.Tensor,
              match_true: torch.Tensor | None, match_twin: torch.Tensor | None, top_k: int) -> dict:
    """The twin test: how often each caption's own image ranks above its swapped twin (percent).

    ``sims`` [T, I] are the captions' similarities to every gallery image, ``true_image`` /
    ``twin_image`` [T] the gallery positions of each caption's image and of its twin,
    ``match_true`` / ``match_twin`` [T] the cross encoders' matching probabilities of those two pairs
    (None for a dual encoder). By embeddings the image with the higher similarity ranks first. After
    re-ranking, as the retrieval loop does (``RetrievalTestLoop``: the first ``top_k`` by similarity are
    sorted by probability + similarity and stay above the rest): if both are in the shortlist the higher
    probability + similarity ranks first, if one is, it ranks first, if neither, the similarity decides.
    Ties count half. Returns ``captions``, ``embedding`` and ``reranked`` (None without match scores).
    """
    rows = torch.arange(len(true_image))
    s_true, s_twin = sims[rows, true_image], sims[rows, twin_image]

    def win(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a > b).double() + 0.5 * (a == b).double()

    by_embedding = win(s_true, s_twin)
    out = dict(captions=len(rows), embedding=100 * by_embedding.mean().item(), reranked=None)
    if match_true is None:
        return out
    # rank = how many gallery images score strictly higher (the loop's top-k shortlist)
    listed_true = (sims > s_true[:, None]).sum(1) < top_k
    listed_twin = (sims > s_twin[:, None]).sum(1) < top_k
    by_rerank = torch.where(listed_true & listed_twin, win(match_true + s_true, match_twin + s_twin),
                            torch.where(listed_true ^ listed_twin, listed_true.double(), by_embedding))
    out['reranked'] = 100 * by_rerank.mean().item()
    return out


def format_twin_test(twins: dict) -> str:
    """The twin test as printed under the recall table."""
    reranked = '-' if twins['reranked'] is None else f"{twins['reranked']:.1f}%"
    return (f"twin test ({twins['captions']} test captions whose image has a swapped twin; own image above "
            f"the twin, 50% is chance): embedding similarity {twins['embedding']:.1f}%, re-ranked {reranked}")


@torch.no_grad()
def twin_test(model, data: str, top_k: int, split: str = 'test', batch_size: int = 64) -> dict:
    """:func:`twin_wins` of a trained model on a toy-shapes split: every caption of every image whose
    swapped twin (same ``group`` in ``<split>_objects.jsonl``) is in the split; the gallery is the split's
    images. ``model`` needs ``image_features`` / ``text_features``; ``match_features`` if it re-ranks."""
    records = load_objects(data, split)
    groups: dict = {}
    for index, record in enumerate(records):
        groups.setdefault(record['group'], []).append(index)
    model = model.eval()
    preprocessor = model.data_preprocessor
    tokens, image_embeds = [], []
    for start in range(0, len(records), batch_size):
        pixels = preprocessor.preprocess([open_rgb(osp.join(data, r['image_path']))
                                          for r in records[start:start + batch_size]])
        t, e = model.image_features(pixels)
        tokens.append(t)
        image_embeds.append(e)
    tokens, image_embeds = torch.cat(tokens), torch.cat(image_embeds)
    captions = [(text, index, members[1 - members.index(index)])
                for members in groups.values() if len(members) == 2
                for index in members for text in records[index]['captions']]
    if not captions:
        raise ValueError(f'{osp.join(data, split + "_objects.jsonl")} holds no swapped twins '
                         '(a corpus made with swap_pairs=False)')
    texts, true_image, twin_image = zip(*captions)
    true_image, twin_image = torch.tensor(true_image), torch.tensor(twin_image)
    sims, match_true, match_twin = [], [], []
    rerank = callable(getattr(model, 'match_features', None))
    for start in range(0, len(texts), batch_size):
        batch = preprocessor.tokenize(list(texts[start:start + batch_size]))
        hidden, embeds = model.text_features(batch['input_ids'], batch['attention_mask'])
        sims.append(embeds @ image_embeds.T)
        if rerank:
            own = slice(start, start + len(hidden))
            for images, out in ((true_image[own], match_true), (twin_image[own], match_twin)):
                out.append(model.match_features(tokens[images], hidden, batch['attention_mask']).float())
    sims = torch.cat(sims).float()
    match_true, match_twin = (torch.cat(m) if rerank else None for m in (match_true, match_twin))
    return twin_wins(sims, true_image, twin_image, match_true, match_twin, top_k)


def train_and_test(cfg: Config) -> tuple[dict, float, int]:
    """Train and test one config: test metrics (without the ``retrieval/`` prefix), seconds, iterations.

    The trained model is also saved with ``save_pretrained`` into ``<work_dir>/model`` (safetensors,
    config, tokenizer): ``R2D2Inferencer``, the tools and the web demo load it without unpickling.
    """
    runner = StrictRunner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    seconds = time.perf_counter() - start
    metrics = {k.split('/', 1)[1]: v for k, v in runner.test().items()}
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    model.save_pretrained(osp.join(cfg.work_dir, 'model'))
    return metrics, seconds, runner.iter


def split_rankings(metrics: dict) -> tuple[dict, dict]:
    """Embedding-similarity recalls and re-ranked recalls (empty for dual encoders)."""
    plain = {k: v for k, v in metrics.items() if not k.startswith('rerank_')}
    reranked = {k[len('rerank_'):]: v for k, v in metrics.items() if k.startswith('rerank_')}
    return plain, reranked


def run_demo(args: argparse.Namespace, summary: dict, env: dict) -> None:
    cfg = build_config(args, DEMO_CONFIGS[args.captions])
    metrics, seconds, iters = train_and_test(cfg)
    plain, reranked = split_rankings(metrics)
    model = R2D2Model.from_pretrained(osp.join(args.work_dir, 'model'))
    localisation = entity_localisation(model, args.data)
    # the twin test needs captions that name both objects (object captions of swapped twins can be equal)
    twins = twin_test(model, args.data, cfg.test_cfg.top_k) if args.captions == 'scene' else None
    rows = {'chance': chance_recalls(summary['num_test_images'], summary['num_test_texts']),
            'embedding similarity': plain,
            f're-ranked (top {cfg.test_cfg.top_k})': reranked}
    print(f'\nR2D2 tiny on toy shapes, {args.epochs} epochs, {args.amp}, seed {args.seed}: retrieval '
          'on the test split (%)\n')
    print(format_table(rows))
    if twins is not None:
        print(f'\n{format_twin_test(twins)}')
    print(f'\ntraining: {iters} iterations in {seconds:.0f} s ({iters / seconds:.2f} it/s)')
    print("\nentity attention (an object's phrase in its caption; own box above the other shape's, "
          '50% is chance):')
    for layer, result in localisation.items():
        print(f'  {layer}: {result["own_box_wins"]:.1f}% of {result["pairs"]} (image, object) pairs, '
              f'red circles {result["red_circles"]:.1f}%')
    with open(osp.join(args.work_dir, 'demo_results.json'), 'w') as f:
        json.dump(dict(rows, twin_test=twins, entity_attention=localisation, training=dict(
            precision=args.amp, seed=args.seed, captions=args.captions, iters=iters, seconds=seconds),
            environment=env), f, indent=2)
    print(f'\nenvironment: {format_environment(env)}')
    print(f'results: {osp.join(args.work_dir, "demo_results.json")}')
    print(f'model: {osp.join(args.work_dir, "model")} (R2D2Model.from_pretrained / R2D2Inferencer)')


def format_ablation(results: dict, chance: dict) -> str:
    """Table 3 on the toy data: R@1 both ways and R@M, by embeddings and re-ranked, and speed."""
    header = (f'{"model":<16}{"i2t R@1":>9}{"t2i R@1":>9}{"R@M":>8}{"re-ranked R@M":>15}'
              f'{"iters":>7}{"it/s":>7}{"train s":>9}')
    lines = [header, '-' * len(header),
             f'{"chance":<16}{chance["i2t_R@1"]:>9.2f}{chance["t2i_R@1"]:>9.2f}{chance["R@M"]:>8.2f}']
    for name, r in results.items():
        rerank = f'{r["reranked"]["R@M"]:>15.2f}' if r['reranked'] else f'{"-":>15}'
        lines.append(f'{name:<16}{r["plain"]["i2t_R@1"]:>9.2f}{r["plain"]["t2i_R@1"]:>9.2f}'
                     f'{r["plain"]["R@M"]:>8.2f}{rerank}{r["iters"]:>7d}'
                     f'{r["iters"] / r["seconds"]:>7.2f}{r["seconds"]:>9.0f}')
    return '\n'.join(lines)


def run_ablation(args: argparse.Namespace, summary: dict, env: dict) -> None:
    results = {}
    for key in args.variants:
        name, config = VARIANTS[key]
        print(f'\n=== {name} ({config}.py), seed {args.seed}, {args.epochs} epochs ===')
        cfg = build_config(args, config, work_dir=osp.join(args.work_dir, key))
        metrics, seconds, iters = train_and_test(cfg)
        plain, reranked = split_rankings(metrics)
        results[name] = dict(plain=plain, reranked=reranked, seconds=seconds, iters=iters)
    chance = chance_recalls(summary['num_test_images'], summary['num_test_texts'])
    print(f'\nTable 3 on toy shapes: seed {args.seed}, {args.epochs} epochs, test split (%)\n')
    print(format_ablation(results, chance))
    out = osp.join(args.work_dir, f'ablation_seed{args.seed}.json')
    with open(out, 'w') as f:
        json.dump(dict(seed=args.seed, epochs=args.epochs, chance=chance, results=results, environment=env),
                  f, indent=2)
    print(f'\nenvironment: {format_environment(env)}')
    print(f'results: {out}')


def parse_args(argv: list | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--captions', choices=CAPTION_STYLES, default='scene',
                        help='scene: captions name both shapes; objects: one caption per shape (the '
                        'attention demo, configs/demo/r2d2_tiny_shapes_objects.py)')
    parser.add_argument('--data', default=None,
                        help='toy corpus folder, made if missing (default data/toy_shapes, '
                        'data/toy_shapes_objects with --captions objects)')
    parser.add_argument('--work-dir', default=None,
                        help='default work_dirs/demo (work_dirs/demo_objects with --captions objects, '
                        'work_dirs/demo_ablation with --ablation)')
    parser.add_argument('--epochs', type=int, default=None,
                        help="default: the config's: 8 (1,000 iterations), 16 with --captions objects")
    parser.add_argument('--val-interval', type=int, default=None,
                        help="evaluate every N epochs (default: the config's: 4, 16 with --captions objects)")
    parser.add_argument('--num-train', type=int, default=2000, help='training images')
    parser.add_argument('--num-test', type=int, default=200, help='test images')
    parser.add_argument('--seed', type=int, default=0, help='training seed (the corpus keeps seed 0)')
    parser.add_argument('--amp', choices=['fp32', *AMP_DTYPES], default='fp32',
                        help='training precision: fp32, or bf16 / fp16 mixed precision '
                        '(MixedPrecisionOptimWrapper, as configs/demo/r2d2_tiny_shapes_bf16.py)')
    parser.add_argument('--ablation', action='store_true', help="train Table 3's variants and compare")
    parser.add_argument('--variants', nargs='+', choices=sorted(VARIANTS), default=list(VARIANTS),
                        help='variants for --ablation')
    parser.add_argument('--verbose', action='store_true',
                        help="log at DEBUG: mmengine's environment and config dump, hook order, optimizer "
                        'options per parameter')
    args = parser.parse_args(argv)
    objects = args.captions == 'objects'
    if args.epochs is None:
        config = osp.join(CONFIG_DIR, DEMO_CONFIGS[args.captions] + '.py')
        args.epochs = Config.fromfile(config).train_cfg.max_epochs
    if args.epochs < 2:
        parser.error('--epochs must be at least 2 (one warm-up epoch, then cosine decay)')
    if objects and args.ablation:
        parser.error('--ablation trains the scene-caption configs; drop --captions objects')
    args.data = args.data or ('data/toy_shapes_objects' if objects else 'data/toy_shapes')
    args.work_dir = args.work_dir or ('work_dirs/demo_ablation' if args.ablation else
                                      'work_dirs/demo_objects' if objects else 'work_dirs/demo')
    return args


def main() -> None:
    args = parse_args()
    summary = ensure_toy_shapes(args.data, num_train=args.num_train, num_test=args.num_test,
                                image_size=64, seed=0, caption_style=args.captions)
    print(f'toy corpus: {summary["num_train_images"]} train / {summary["num_test_images"]} test '
          f'images in {args.data}')
    env = environment()  # at the start: the commit that runs, not the one checked out when it ends
    if args.ablation:
        run_ablation(args, summary, env)
    else:
        run_demo(args, summary, env)


if __name__ == '__main__':
    main()
