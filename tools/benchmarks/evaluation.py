"""Retrieval evaluation at real size on synthetic features: ours against the official dense approach.

    python tools/benchmark.py eval [--images 30000] [--texts 150000] [--dim 768] [--topk 16]
        [--chunk-size 1024] [--rerank-batch-size 4096] [--baseline-max-gib 4] [--json OUT]
    python tools/benchmarks/evaluation.py ...        # the same, standalone

Both methods rank every image against every text (i2t) and every text against every image
(t2i) by cosine similarity of L2-normalised features and re-rank each query's top k with a
tiny cross encoder (r2d2lib's ``CrossEncoder``, 1 layer, width 32, 8 tokens a side, plus an
ITM head), final score = P(matched) + similarity:

* **ours** (what ``RetrievalTestLoop`` runs per rank): ``chunked_topk`` keeps only the top k
  of ``--chunk-size`` queries at a time, then ``rerank_topk`` scores the flattened
  (query, candidate) pairs in batches of ``--rerank-batch-size``;
* **dense (official)**: the official evaluation's approach: a dense images x texts similarity
  matrix, two dense score matrices (i2t and t2i, filled with -100), the cross encoder run one
  query at a time on its k candidates, the ranks read from the dense score matrices. It holds
  three images x texts float32 matrices; when they would exceed ``--baseline-max-gib`` it runs
  at the largest size that fits with the same images:texts ratio and says so (``scaled_down``).

Features: image i is a random unit vector; text t belongs to image ``t % images`` and is that
vector plus noise, normalised (so recall is meaningful); token features are random.

Memory is measured honestly per method: each method runs in a forked child process; after the
child has made its features it resets the kernel's peak-RSS mark (``/proc/self/clear_refs`` = 5)
and reads its RSS (``base_rss_mb``); after the method it reads the peak (``VmHWM``,
``peak_rss_mb``). ``work_mb = peak - base`` is what the method itself needed on top of the
features both methods share. Where clear_refs is not writable the peak is ``ru_maxrss`` and the
line says ``"peak_source": "ru_maxrss"``.

Every run prints one JSON line; ours runs at the full and at half size, the baseline at its size
and at half of it; an ``agreement`` line says whether both methods give the same top-10 lists at
the baseline's size (``identical_top10_share``; ours runs again there if the baseline was scaled
down; float rounding in differently shaped batches may swap near-tied candidates), and a last
``scaling`` line compares the growth of ``work_mb`` with
the growth of queries x k and of queries x candidates between the two sizes of each method.
"""
import argparse
import ctypes
import ctypes.util
import gc
import json
import math
import multiprocessing
import os
import resource
import sys
import time
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

# imported here, before any child is forked, so that the children do not import again
from r2d2lib.evaluation.ranking import chunked_topk, rerank_topk
from r2d2lib.models.fusion.cross_encoder import CrossEncoder

MIB = 2 ** 20
RECALL_K = 10


# ----------------------------------------------------------------- memory
def _status_mb(field: str) -> Optional[float]:
    """``VmRSS`` / ``VmHWM`` of this process in MiB, from /proc/self/status (Linux)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark of this process to its current RSS."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return _status_mb('VmHWM') is not None
    except OSError:
        return False


def _trim() -> None:
    gc.collect()
    libc = ctypes.util.find_library('c')
    if libc:
        try:
            ctypes.CDLL(libc).malloc_trim(0)
        except (OSError, AttributeError):
            pass


# ----------------------------------------------------------------- synthetic data
def make_features(num_images: int, num_texts: int, dim: int, tokens: int, width: int, seed: int):
    """Unit image vectors, texts = their image's vector + noise, random token features."""
    generator = torch.Generator().manual_seed(seed)
    images = F.normalize(torch.randn(num_images, dim, generator=generator), dim=-1)
    owner = torch.arange(num_texts) % num_images
    texts = torch.randn(num_texts, dim, generator=generator).mul_(1.2 / math.sqrt(dim))
    texts.add_(images[owner])
    texts = F.normalize(texts, dim=-1)
    return dict(image_embeds=images, text_embeds=texts, owner=owner,
                image_tokens=torch.randn(num_images, tokens, width, generator=generator),
                text_tokens=torch.randn(num_texts, tokens, width, generator=generator))


def tiny_cross_encoder(width: int, seed: int):
    """r2d2lib's CrossEncoder (1 layer) + an ITM head: ``score(image_tokens, text_tokens) -> [P]``."""
    torch.manual_seed(seed)
    encoder = CrossEncoder(width=width, kv_width=width, num_layers=1, num_heads=2).eval()
    head = torch.nn.Linear(width, 2).eval()

    def score(image_tokens, text_tokens):
        return head(encoder(text_tokens, image_tokens)[:, 0]).softmax(-1)[:, 1]

    return score


def recall_at_1(top1_texts: torch.Tensor, top1_images: torch.Tensor, owner: torch.Tensor) -> Dict:
    """R@1 (percent) of both directions: text t's image is ``owner[t]``."""
    i2t = (owner[top1_texts] == torch.arange(len(top1_texts))).double().mean()
    t2i = (top1_images == owner).double().mean()
    return {'i2t_R@1': round(100 * float(i2t), 3), 't2i_R@1': round(100 * float(t2i), 3)}


# ----------------------------------------------------------------- the two methods
def run_ours(feats: dict, score, topk: int, chunk_size: int, batch_size: int) -> dict:
    """Chunked top-k per direction, then the top-k pairs re-ranked in batches (the library's code)."""
    image_tokens, text_tokens = feats['image_tokens'], feats['text_tokens']
    depth = max(topk, RECALL_K)
    out = {}
    for direction, queries, gallery in (('i2t', feats['image_embeds'], feats['text_embeds']),
                                        ('t2i', feats['text_embeds'], feats['image_embeds'])):
        sims, indices = chunked_topk(queries, gallery, depth, chunk_size)

        def pair_score(query_idx, cand_idx, direction=direction):
            images, texts = (query_idx, cand_idx) if direction == 'i2t' else (cand_idx, query_idx)
            return score(image_tokens[images], text_tokens[texts])

        _, reranked = rerank_topk(indices[:, :topk], sims[:, :topk], pair_score, batch_size,
                                  progress=False)
        out[direction] = torch.cat([reranked, indices[:, topk:]], dim=1)[:, :RECALL_K]
    return out


def run_dense(feats: dict, score, topk: int) -> dict:
    """The official evaluation's approach: dense matrices, one query at a time through the cross encoder."""
    images, texts = feats['image_embeds'], feats['text_embeds']
    image_tokens, text_tokens = feats['image_tokens'], feats['text_tokens']
    sims = images @ texts.t()  # [Ni, Nt]
    score_i2t = torch.full_like(sims, -100.0)
    for i in range(sims.shape[0]):
        top_sims, top_idx = sims[i].topk(topk)
        match = score(image_tokens[i].expand(topk, -1, -1), text_tokens[top_idx])
        score_i2t[i, top_idx] = match + top_sims
    score_t2i = torch.full((sims.shape[1], sims.shape[0]), -100.0)
    for t in range(sims.shape[1]):
        top_sims, top_idx = sims[:, t].topk(topk)
        match = score(image_tokens[top_idx], text_tokens[t].expand(topk, -1, -1))
        score_t2i[t, top_idx] = match + top_sims
    return {'i2t': score_i2t.topk(RECALL_K, dim=1).indices, 't2i': score_t2i.topk(RECALL_K, dim=1).indices}


def _child(method: str, size: dict, args, conn) -> None:
    """Make the features, reset the peak-RSS mark, run one method, send its numbers."""
    try:
        torch.set_num_threads(args.threads)
        feats = make_features(size['images'], size['texts'], args.dim, args.tokens, args.width, args.seed)
        score = tiny_cross_encoder(args.width, args.seed)
        _trim()
        exact = _reset_peak()
        base = _status_mb('VmRSS') if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        with torch.no_grad():
            if method == 'ours':
                ranked = run_ours(feats, score, args.topk, args.chunk_size, args.rerank_batch_size)
            else:
                ranked = run_dense(feats, score, args.topk)
        seconds = time.perf_counter() - start
        peak = _status_mb('VmHWM') if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result = dict(seconds=round(seconds, 3), peak_rss_mb=round(peak, 1), base_rss_mb=round(base, 1),
                      work_mb=round(peak - base, 1), peak_source='VmHWM after clear_refs' if exact
                      else 'ru_maxrss',
                      **recall_at_1(ranked['i2t'][:, 0], ranked['t2i'][:, 0], feats['owner']))
        result['rankings'] = {k: v.tolist() for k, v in ranked.items()}
        conn.send(result)
    except BaseException as err:  # report, never hang the parent
        conn.send(dict(error=f'{type(err).__name__}: {err}'))
    finally:
        conn.close()


def measure(method: str, size: dict, args) -> dict:
    """Run one method in a forked child; its numbers, or an error line if it died."""
    ctx = multiprocessing.get_context('fork')
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(method, size, args, send))
    proc.start()
    send.close()
    try:
        result = receive.recv()
    except EOFError:
        result = {}
    proc.join()
    if proc.exitcode != 0 and 'error' not in result:
        result = dict(error=f'child exited with code {proc.exitcode} (killed for memory?)')
    queries = size['images'] + size['texts']
    line = dict(method='ours' if method == 'ours' else 'dense (official)', **size, dim=args.dim,
                topk=args.topk, queries=queries, queries_x_k=queries * args.topk,
                queries_x_candidates=2 * size['images'] * size['texts'], **result)
    return line


def agreement(ours: Dict[str, list], dense: Dict[str, list]) -> dict:
    """Share of queries (both directions) whose top-10 lists, and whose first results, are identical.

    The two methods compute the same scores in different batch shapes (similarity chunks against
    one matrix product, 4,096 pairs against 16 per cross-encoder call), so float rounding can swap
    two candidates whose scores differ by ~1e-7.
    """
    same10 = same1 = total = 0
    for direction in ('i2t', 't2i'):
        for a, b in zip(ours[direction], dense[direction]):
            same10 += a == b
            same1 += a[0] == b[0]
            total += 1
    return dict(identical_top10_share=round(same10 / max(total, 1), 6),
                identical_top1_share=round(same1 / max(total, 1), 6))


def baseline_size(args) -> dict:
    """The largest size with the images:texts ratio whose 3 dense float32 matrices fit the budget."""
    budget = args.baseline_max_gib * 2 ** 30
    need = 3 * 4 * args.images * args.texts
    scale = min(1.0, math.sqrt(budget / need))
    return dict(images=max(1, int(args.images * scale)), texts=max(1, int(args.texts * scale)),
                scaled_down=scale < 1.0)


def _half(size: dict) -> dict:
    return dict(size, images=max(1, size['images'] // 2), texts=max(1, size['texts'] // 2))


def _ratio(big: dict, small: dict, key: str) -> Optional[float]:
    if key not in big or key not in small or not small[key]:
        return None
    return round(big[key] / small[key], 2)


def scaling_line(ours: List[dict], dense: List[dict]) -> dict:
    """Growth of work_mb between the two sizes of each method, against queries x k and x candidates."""
    line = dict(method='scaling')
    for name, (big, small) in (('ours', ours), ('dense', dense)):
        line[f'{name}_work_mb_ratio'] = _ratio(big, small, 'work_mb')
        line[f'{name}_queries_x_k_ratio'] = _ratio(big, small, 'queries_x_k')
        line[f'{name}_queries_x_candidates_ratio'] = _ratio(big, small, 'queries_x_candidates')
    return line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``eval`` subcommand's options."""
    def positive_int(value: str) -> int:
        number = int(value)
        if number < 1:
            raise argparse.ArgumentTypeError(f'must be a positive integer, got {value}')
        return number

    parser.add_argument('--images', type=positive_int, default=30000, help='gallery images')
    parser.add_argument('--texts', type=positive_int, default=150000, help='gallery texts')
    parser.add_argument('--dim', type=positive_int, default=768, help='embedding width')
    parser.add_argument('--topk', type=positive_int, default=16, help='candidates re-ranked per query')
    parser.add_argument('--chunk-size', type=positive_int, default=1024, help='queries per similarity chunk')
    parser.add_argument('--rerank-batch-size', type=positive_int, default=4096,
                        help='pairs per cross-encoder call (ours)')
    parser.add_argument('--tokens', type=positive_int, default=8, help='tokens per image and per text')
    parser.add_argument('--width', type=positive_int, default=32, help='width of the tiny cross encoder')
    parser.add_argument('--baseline-max-gib', type=float, default=4.0,
                        help='memory the dense baseline\'s three matrices may take (else it runs smaller)')
    parser.add_argument('--threads', type=positive_int, default=1,
                        help='torch threads per method (default 1)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--skip-baseline', action='store_true', help='run ours only')
    parser.add_argument('--min-agreement', type=float, default=0.99,
                        help='exit 1 when fewer queries than this share get identical top-10 lists')
    parser.add_argument('--json', help='also write every line to this file (JSON list)')


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; prints one JSON line per run. Exit status 1 if a run failed or the
    two methods ranked differently at the same size."""
    full = dict(images=args.images, texts=args.texts, scaled_down=False)
    lines: List[dict] = []

    def emit(line: dict) -> dict:
        shown = {k: v for k, v in line.items() if k != 'rankings'}
        print(json.dumps(shown, ensure_ascii=False), flush=True)
        lines.append(shown)
        return line

    ours = [emit(measure('ours', full, args)), emit(measure('ours', _half(full), args))]
    status = 0
    if not args.skip_baseline:
        size = baseline_size(args)
        dense = [emit(measure('dense', size, args)), emit(measure('dense', _half(size), args))]
        same_size = ours[0] if not size['scaled_down'] else measure('ours', size, args)
        if 'rankings' in dense[0] and 'rankings' in same_size:
            line = dict(method='agreement', images=size['images'], texts=size['texts'],
                        **agreement(same_size['rankings'], dense[0]['rankings']))
            if same_size is not ours[0]:
                line.update(ours_seconds=same_size['seconds'], ours_work_mb=same_size['work_mb'])
            emit(line)
            status |= int(line['identical_top10_share'] < args.min_agreement)
        emit(scaling_line(ours, dense))
    status |= int(any('error' in line for line in lines))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(lines, f, indent=1, ensure_ascii=False)
    return status


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == '__main__':
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    sys.exit(main())
