"""``topk``: ``chunked_topk`` (one preallocated buffer) against the version it replaced; its memory.

    python tools/benchmark.py topk [--queries 8192] [--gallery 40960] [--dim 64] [--topk 16]
        [--chunk-sizes 256 1024 4096] [--max-buffer-mib 512] [--methods ours baseline]
        [--repeats 5] [--live-peak] [--threads 1] [--json OUT]

For each chunk size, ``ours`` (``r2d2lib.evaluation.chunked_topk``) and ``baseline`` (the
function at commit d7ce384, ``r2d2lib/evaluation/ranking.py`` lines 48-56, kept here line for
line: a new ``[chunk, G]`` similarity block per chunk, the results concatenated at the end) run
alternately (order flipped every repeat), each in a forked child process that makes the features,
trims the C heap, resets the kernel's peak-RSS mark (``/proc/self/clear_refs``) and reads its RSS,
then ranks and reads its peak RSS (``VmHWM``): ``work_mib = peak - base`` is what ranking needed on
top of the features. CPU seconds of the child and wall seconds are measured around the call.
Every line also prints ``formula_mib = (4 * rows * G + 12 * Q * k) / 2**20``, the working memory
docs/evaluation.md gives (one fp32 buffer of ``rows`` x gallery similarities, Q x k fp32 scores and
int64 indices), to compare with ``work_mib``; ``rows`` is the chunk ours uses
(``chunk_rows``: ``--chunk-sizes`` capped so that the buffer stays within ``--max-buffer-mib``),
the baseline uses the chunk as given. With ``--live-peak`` the child calls the method once more
under ``LiveTensorPeak`` (the peak bytes of the tensors it creates and holds at once, torch's own
accounting, independent of the C heap): ``live_tensor_peak_mib``. Median and min-max over
``--repeats``.
"""
import argparse
import multiprocessing as mp
import time

import torch

from r2d2lib.evaluation.ranking import chunk_rows, chunked_topk

from .common import MIB, malloc_trim, positive_int, report_lines, reset_peak_rss, rss_mib, vm_hwm_mib
from .losses import LiveTensorPeak, summarize


def baseline_chunked_topk(query_embeds, gallery_embeds, k, chunk_size):
    """r2d2lib/evaluation/ranking.py@d7ce384 lines 48-56."""
    gallery_t = gallery_embeds.float().t()
    scores, indices = [], []
    for start in range(0, query_embeds.shape[0], chunk_size):
        sims = query_embeds[start:start + chunk_size].float() @ gallery_t
        chunk_scores, chunk_indices = sims.topk(k, dim=1)
        scores.append(chunk_scores)
        indices.append(chunk_indices)
    return torch.cat(scores), torch.cat(indices)


def ours_chunked_topk(query_embeds, gallery_embeds, k, chunk_size, max_buffer_bytes):
    return chunked_topk(query_embeds, gallery_embeds, k, chunk_size, max_buffer_bytes=max_buffer_bytes)


def baseline(query_embeds, gallery_embeds, k, chunk_size, max_buffer_bytes):
    return baseline_chunked_topk(query_embeds, gallery_embeds, k, chunk_size)


METHODS = {'ours': ours_chunked_topk, 'baseline': baseline}


def _child(method: str, args, chunk: int, conn) -> None:
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(args.seed)
    queries = torch.nn.functional.normalize(torch.randn(args.queries, args.dim, generator=g), dim=1)
    gallery = torch.nn.functional.normalize(torch.randn(args.gallery, args.dim, generator=g), dim=1)
    malloc_trim()
    exact = reset_peak_rss()
    base = rss_mib()
    cpu, wall = time.process_time(), time.perf_counter()
    budget = args.max_buffer_mib * MIB
    scores, indices = METHODS[method](queries, gallery, args.topk, chunk, budget)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    result = dict(cpu_s=cpu, wall_s=wall, work_mib=vm_hwm_mib() - base, exact_peak=exact,
                  checksum=float(scores.sum()) + float(indices[:, 0].sum()))
    if args.live_peak:
        del scores, indices
        with LiveTensorPeak() as tracker:
            METHODS[method](queries, gallery, args.topk, chunk, budget)
        result['live_tensor_peak_mib'] = tracker.peak / MIB
    conn.send(result)
    conn.close()


def measure(method: str, args, chunk: int) -> dict:
    ctx = mp.get_context('fork')
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(method, args, chunk, child))
    proc.start()
    child.close()
    result = parent.recv()
    proc.join()
    return result


def run(args: argparse.Namespace) -> int:
    lines = []
    for chunk in args.chunk_sizes:
        runs = {m: [] for m in args.methods}
        order = list(args.methods)
        for repeat in range(args.repeats):
            for method in (order if repeat % 2 == 0 else order[::-1]):
                runs[method].append(measure(method, args, chunk))
        checksums = {m: runs[m][0]['checksum'] for m in args.methods}
        for method in args.methods:
            rows = min(chunk, args.queries)
            if method == 'ours':
                rows = min(chunk_rows(chunk, args.gallery, args.max_buffer_mib * MIB), args.queries)
            formula = (4 * rows * args.gallery + 12 * args.queries * args.topk) / MIB
            line = dict(method=method, queries=args.queries, gallery=args.gallery, dim=args.dim,
                        topk=args.topk, chunk_size=chunk, rows=rows, threads=args.threads,
                        repeats=args.repeats,
                        cpu_s=summarize([r['cpu_s'] for r in runs[method]]),
                        wall_s=summarize([r['wall_s'] for r in runs[method]]),
                        work_mib=summarize([r['work_mib'] for r in runs[method]]),
                        formula_mib=formula, exact_peak=runs[method][0]['exact_peak'],
                        same_result=checksums[method] == checksums[args.methods[0]])
            if args.live_peak:
                line['live_tensor_peak_mib'] = summarize([r['live_tensor_peak_mib'] for r in runs[method]])
            lines.append(line)
    report_lines(lines, args.json)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--queries', type=positive_int, default=8192)
    parser.add_argument('--gallery', type=positive_int, default=40960)
    parser.add_argument('--dim', type=positive_int, default=64)
    parser.add_argument('--topk', type=positive_int, default=16)
    parser.add_argument('--chunk-sizes', type=positive_int, nargs='+', default=[256, 1024, 4096])
    parser.add_argument('--max-buffer-mib', type=positive_int, default=512,
                        help="ours' similarity buffer budget (chunked_topk's max_buffer_bytes; default 512)")
    parser.add_argument('--methods', nargs='+', choices=list(METHODS), default=list(METHODS))
    parser.add_argument('--live-peak', action='store_true',
                        help='also the peak of live tensors (one more call per child)')
    parser.add_argument('--repeats', type=positive_int, default=5)
    parser.add_argument('--threads', type=positive_int, default=1, help='torch threads (default 1)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', metavar='OUT', help='write the measurements to this JSON file')
