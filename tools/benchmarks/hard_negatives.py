"""``hard-negatives``: the vectorised hard-negative draw against the official per-row loop.

    python tools/benchmark.py hard-negatives [--rows 64] [--candidates 2048] [--dim 256]
        [--repeats 5] [--threads 1] [--json OUT]

One direction's draw for ``--rows`` queries over ``--candidates`` gathered candidates (the
paper's per-GPU shape: 64 queries against the 2,048 of 32 GPUs), the negatives' feature rows
gathered, as FGR needs them:

* ``official``: models/r2d2_retrieval.py of the official release (yuxie11/R2D2 at c7127fa),
  lines 81-93 (``compute_it_similarity``: softmax over the row, same ids zeroed) and lines 49-54
  (per row ``torch.multinomial(weights[i], 1).item()``, the row appended, ``torch.stack``),
  line for line; nothing else (no check of the row's sum: the official loop has none).
* ``ours``: :func:`r2d2lib.models.utils.sample_hard_negatives` (all rows at once) and one
  index of the candidate rows.

The two alternate (order flipped every repeat), each timed in CPU seconds of this process and
wall seconds over ``--inner`` calls; median and min-max of ``--repeats`` repeats, and the ratio
of the medians.
"""
import argparse
import time

import torch
import torch.nn.functional as F

from r2d2lib.models.utils import sample_hard_negatives

from .common import positive_int, report_lines
from .losses import summarize


def official_draw(sim, idx, candidate_feats, temp):
    """r2d2_retrieval.py@c7127fa lines 81-93 and 49-54 (one direction, one process)."""
    with torch.no_grad():
        pos_idx = torch.eq(idx[:, None], idx_all(candidate_feats, idx)[None, :])
        weights = F.softmax(sim / temp, dim=1)
        weights.masked_fill_(pos_idx, 0)
    negatives = []
    for i in range(sim.shape[0]):
        neg_idx = torch.multinomial(weights[i], 1).item()
        negatives.append(candidate_feats[neg_idx])
    return torch.stack(negatives, dim=0)


def idx_all(candidate_feats, idx):
    """The candidates' ids: the queries are the first rows of the gathered batch (rank 0's)."""
    return torch.cat([idx, torch.arange(idx.shape[0], candidate_feats.shape[0]) + 10 ** 9])


def ours_draw(sim, idx, candidate_feats, temp):
    indices, _ = sample_hard_negatives(sim, idx, idx_all(candidate_feats, idx), temp)
    return candidate_feats[indices]


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(args.seed)
    queries = F.normalize(torch.randn(args.rows, args.dim, generator=g), dim=1)
    candidates = F.normalize(torch.randn(args.candidates, args.dim, generator=g), dim=1)
    sim, idx, temp = queries @ candidates.t(), torch.arange(args.rows), torch.tensor(0.07)
    methods = {'official': official_draw, 'ours': ours_draw}
    for fn in methods.values():
        fn(sim, idx, candidates, temp)
    times = {m: dict(cpu=[], wall=[]) for m in methods}
    names = list(methods)
    for repeat in range(args.repeats):
        for name in (names if repeat % 2 == 0 else names[::-1]):
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(args.inner):
                methods[name](sim, idx, candidates, temp)
            times[name]['cpu'].append((time.process_time() - cpu) / args.inner * 1000)
            times[name]['wall'].append((time.perf_counter() - wall) / args.inner * 1000)
    lines = [dict(method=name, rows=args.rows, candidates=args.candidates, threads=torch.get_num_threads(),
                  repeats=args.repeats, inner=args.inner, cpu_ms=summarize(times[name]['cpu']),
                  wall_ms=summarize(times[name]['wall'])) for name in names]
    lines.append(dict(method='official / ours',
                      cpu=lines[0]['cpu_ms']['median'] / lines[1]['cpu_ms']['median'],
                      wall=lines[0]['wall_ms']['median'] / lines[1]['wall_ms']['median']))
    report_lines(lines, args.json)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--rows', type=positive_int, default=64)
    parser.add_argument('--candidates', type=positive_int, default=2048)
    parser.add_argument('--dim', type=positive_int, default=256)
    parser.add_argument('--repeats', type=positive_int, default=5)
    parser.add_argument('--inner', type=positive_int, default=20, help='calls per timed repeat')
    parser.add_argument('--threads', type=positive_int, default=1, help='torch threads (default 1)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', metavar='OUT', help='write the measurements to this JSON file')
