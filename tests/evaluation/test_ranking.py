"""Tests of r2d2lib.evaluation.ranking against brute-force loop versions."""
import sys
from pathlib import Path

import pytest
import torch

from r2d2lib.evaluation.ranking import chunk_rows, chunked_topk, hit_matrix, recall_at_k, rerank_topk

sys.path.insert(0, str(Path(__file__).parents[2] / 'tools'))
# ranking.py at d7ce384, lines 48-56 (a new similarity block per chunk, then a cat), kept once
from benchmarks.topk import baseline_chunked_topk  # noqa: E402


def _normed(*shape: int) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(*shape), dim=-1)


def _brute_topk(queries, gallery, k):
    scores, indices = [], []
    for q in queries:
        sims = [(float(q @ g), j) for j, g in enumerate(gallery)]
        sims.sort(key=lambda s: -s[0])
        top = sims[:k]
        scores.append([s for s, _ in top])
        indices.append([j for _, j in top])
    return torch.tensor(scores), torch.tensor(indices)


@pytest.mark.parametrize('num_q,num_g,k,chunk', [(23, 17, 5, 4), (7, 3, 10, 2),
                                                 (10, 12, 12, 1024),
                                                 (5, 9, 1, 5)])
def test_chunked_topk_matches_brute_force(num_q, num_g, k, chunk):
    torch.manual_seed(num_q * 100 + k)
    queries, gallery = _normed(num_q, 8), _normed(num_g, 8)
    scores, indices = chunked_topk(queries, gallery, k, chunk_size=chunk)
    ref_scores, ref_indices = _brute_topk(queries, gallery, min(k, num_g))
    assert indices.shape == (num_q, min(k, num_g))
    assert indices.dtype == torch.long
    assert torch.equal(indices, ref_indices)
    assert torch.allclose(scores, ref_scores, atol=1e-6)


def test_chunked_topk_empty_queries():
    scores, indices = chunked_topk(torch.zeros(0, 4), _normed(6, 4), 3)
    assert scores.shape == indices.shape == (0, 3)


def test_rerank_topk_matches_brute_force():
    torch.manual_seed(0)
    num_q, k = 11, 6
    queries, gallery = _normed(num_q, 8), _normed(20, 8)
    sims, indices = chunked_topk(queries, gallery, k, chunk_size=3)
    table = torch.rand(num_q + 5, 20)  # matching probability of every pair
    query_ids = torch.arange(num_q) + 5  # global ids of the rows
    calls = []

    def pair_score_fn(q, c):
        calls.append(len(q))
        assert q.dtype == c.dtype == torch.long
        return table[q, c]

    final, reranked = rerank_topk(indices, sims, pair_score_fn, batch_size=4,
                                  query_indices=query_ids, progress=False)
    assert max(calls) <= 4 and sum(calls) == num_q * k
    for row in range(num_q):
        ref = sorted(((float(table[query_ids[row], c]) + float(s), int(c))
                      for s, c in zip(sims[row], indices[row])),
                     key=lambda t: -t[0])
        assert reranked[row].tolist() == [c for _, c in ref]
        assert torch.allclose(final[row], torch.tensor([s for s, _ in ref]))
    # the re-ranked list is a permutation of the embedding top-k
    assert torch.equal(reranked.sort(1).values, indices.sort(1).values)


def test_rerank_topk_default_query_ids_and_empty():
    indices = torch.tensor([[2, 0], [1, 2]])
    sims = torch.tensor([[0.9, 0.1], [0.5, 0.4]])
    final, out = rerank_topk(indices, sims,
                             lambda q, c: (q == c).float(), batch_size=3,
                             progress=False)
    assert out.tolist() == [[0, 2], [1, 2]]
    assert torch.allclose(final, torch.tensor([[1.1, 0.9], [1.5, 0.4]]))
    final, out = rerank_topk(torch.zeros(0, 2, dtype=torch.long),
                             torch.zeros(0, 2), lambda q, c: q.float(), 4)
    assert out.shape == (0, 2)


def _brute_recall(topk, queries, txt2img, direction, ks):
    counts = {}
    for k in ks:
        hits = 0
        for row, q in enumerate(queries.tolist()):
            ranked = topk[row, :k].tolist()
            if direction == 'i2t':
                hits += any(txt2img[t] == q for t in ranked)
            else:
                hits += any(i == txt2img[q] for i in ranked)
        counts[k] = hits
    return counts


def test_recall_at_k_multiple_captions():
    torch.manual_seed(1)
    num_img = 6
    txt2img = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 4, 5, 5, 1])
    img_emb, txt_emb = _normed(num_img, 8), _normed(len(txt2img), 8)
    ks = (1, 2, 5, 20)
    # i2t: every image queries all texts
    img_q = torch.arange(num_img)
    _, topk = chunked_topk(img_emb, txt_emb, 20, chunk_size=4)
    assert recall_at_k(topk, img_q, txt2img, 'i2t', ks) == _brute_recall(
        topk, img_q, txt2img, 'i2t', ks)
    assert recall_at_k(topk, img_q, txt2img, 'i2t', ks)[20] == num_img
    # t2i on a shard of texts
    txt_q = torch.arange(1, len(txt2img), 2)
    _, topk = chunked_topk(txt_emb[txt_q], img_emb, 20, chunk_size=4)
    assert recall_at_k(topk, txt_q, txt2img, 't2i', ks) == _brute_recall(
        topk, txt_q, txt2img, 't2i', ks)
    assert recall_at_k(topk, txt_q, txt2img, 't2i', ks)[20] == len(txt_q)


def test_hit_matrix_by_hand():
    txt2img = torch.tensor([0, 0, 1, 1])
    hits = hit_matrix(torch.tensor([[2, 0], [3, 1]]), torch.tensor([0, 1]),
                      txt2img, 'i2t')
    assert hits.tolist() == [[False, True], [True, False]]
    hits = hit_matrix(torch.tensor([[1, 0], [1, 0]]), torch.tensor([0, 3]),
                      txt2img, 't2i')
    assert hits.tolist() == [[False, True], [True, False]]
    with pytest.raises(ValueError):
        hit_matrix(hits.long(), torch.tensor([0, 1]), txt2img, 'x2y')


def _seeded(seed, *shape):
    torch.manual_seed(seed)
    return _normed(*shape)


@pytest.mark.parametrize('num_q,chunk', [(37, 8), (37, 37), (37, 100), (1, 4)])
def test_chunked_topk_is_bit_for_bit_the_old_allocating_version(num_q, chunk):
    queries, gallery = _seeded(3, num_q, 16), _seeded(4, 53, 16)
    got = chunked_topk(queries, gallery, 7, chunk_size=chunk)
    want = baseline_chunked_topk(queries, gallery, 7, chunk)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_chunked_topk_allocates_one_similarity_buffer():
    """Fails before issue 17: a new [chunk, G] block per chunk (and a cat of the results)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class Allocations(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.sizes = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            inputs = {a.untyped_storage().data_ptr() for a in tree_leaves((args, kwargs))
                      if isinstance(a, torch.Tensor)}
            self.sizes += [t.numel() for t in tree_leaves(out)
                           if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs]
            return out

    queries, gallery = _seeded(5, 40, 16), _seeded(6, 50, 16)
    with Allocations() as mode:
        chunked_topk(queries, gallery, 5, chunk_size=8)
    assert sum(1 for n in mode.sizes if n >= 8 * 50) == 1


def test_chunked_topk_caps_its_buffer_at_the_memory_budget():
    """chunk x G fp32 stays within max_buffer_bytes: 894 queries at a 150,000 gallery (512 MiB)."""
    assert chunk_rows(4096, 150_000) == 894 and chunk_rows(256, 150_000) == 256
    assert chunk_rows(1024, 30_000) == 1024 and chunk_rows(8, 10 ** 12) == 1
    from torch.utils._python_dispatch import TorchDispatchMode

    class Largest(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is torch.ops.aten.empty.memory_format:
                self.largest = max(self.largest, out.numel())
            return out

    queries, gallery = _seeded(7, 40, 16), _seeded(8, 50, 16)
    with Largest() as mode:  # 4 x 6 x 50 = 1,200 bytes: 6 rows of 50 (not the asked 32)
        got = chunked_topk(queries, gallery, 5, chunk_size=32, max_buffer_bytes=1200)
    assert mode.largest == 6 * 50
    want = baseline_chunked_topk(queries, gallery, 5, 6)  # the same blocks: bit for bit
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
