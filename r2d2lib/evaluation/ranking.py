"""Retrieval ranking: chunked top-k, re-ranking and recall hit counts.

Pure tensor functions, shared by the retrieval loops and metric. ``chunked_topk``
needs one ``chunk x gallery`` fp32 buffer (at most :data:`SIMILARITY_BUFFER_BYTES`) plus the
``queries x k`` results (12 bytes each): no dense queries x gallery matrix is ever made, only
the top-k of each query.
"""
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from tqdm import tqdm

from r2d2lib.evaluation.positives import PositivePairs

PairScoreFn = Callable[[Tensor, Tensor], Tensor]

DIRECTIONS = ('i2t', 't2i')
# the most bytes the similarity buffer of ``chunked_topk`` may take: 512 MiB, 894 queries of a
# 150,000-text gallery (AIC-ICC's validation size); the chunk shrinks to fit
SIMILARITY_BUFFER_BYTES = 512 * 2 ** 20


def chunk_rows(chunk_size: int, num_gallery: int, max_bytes: int = SIMILARITY_BUFFER_BYTES) -> int:
    """Queries per chunk: ``chunk_size``, fewer if ``chunk x G`` fp32 would exceed ``max_bytes``."""
    return max(1, min(chunk_size, max_bytes // (4 * max(num_gallery, 1))))


def chunked_topk(query_embeds: Tensor,
                 gallery_embeds: Tensor,
                 k: int,
                 chunk_size: int = 1024,
                 max_buffer_bytes: int = SIMILARITY_BUFFER_BYTES) -> Tuple[Tensor, Tensor]:
    """Return the top-k gallery items of every query by dot-product similarity.

    Embeddings are expected L2-normalised, so the score is the cosine
    similarity. Similarities are computed ``chunk_size`` queries at a time in
    float32 on the device of the inputs, into one preallocated ``[chunk, G]``
    buffer, ``chunk = min(chunk_size, max_buffer_bytes // (4 G))`` (:func:`chunk_rows`):
    working memory ``4 * chunk * G + 12 * Q * k`` bytes, at most
    ``max_buffer_bytes + 12 * Q * k`` (plus fp32 copies of the inputs when they are not
    fp32). The chunk changes neither the result nor, beyond per-call overhead, the time.

    Args:
        query_embeds (Tensor): ``[Q, D]`` query embeddings.
        gallery_embeds (Tensor): ``[G, D]`` gallery embeddings.
        k (int): Number of candidates per query, clipped to ``G``.
        chunk_size (int): Queries per similarity chunk, at most.
        max_buffer_bytes (int): Bytes the similarity buffer may take (default 512 MiB).

    Returns:
        tuple[Tensor, Tensor]: ``scores [Q, k]`` (descending) and
        ``indices [Q, k]`` (int64 gallery positions).
    """
    if chunk_size < 1 or max_buffer_bytes < 1:
        raise ValueError(f'chunk_size and max_buffer_bytes must be positive, got {chunk_size}, '
                         f'{max_buffer_bytes}')
    num_queries, num_gallery = query_embeds.shape[0], gallery_embeds.shape[0]
    k = max(0, min(int(k), num_gallery))
    device = query_embeds.device
    if num_queries == 0 or k == 0:
        return (torch.empty(num_queries, k, device=device),
                torch.empty(num_queries, k, dtype=torch.long, device=device))
    chunk_size = chunk_rows(chunk_size, num_gallery, max_buffer_bytes)
    gallery_t = gallery_embeds.float().t()
    # one similarity buffer for every chunk and the results written in place: no allocation per
    # chunk (freeing and reallocating chunk x gallery blocks fragments the C heap) and no final cat
    buffer = torch.empty(min(chunk_size, num_queries), num_gallery, device=device)
    scores = torch.empty(num_queries, k, device=device)
    indices = torch.empty(num_queries, k, dtype=torch.long, device=device)
    for start in range(0, num_queries, chunk_size):
        stop = min(start + chunk_size, num_queries)
        sims = buffer[:stop - start]
        torch.mm(query_embeds[start:stop].float(), gallery_t, out=sims)
        torch.topk(sims, k, dim=1, out=(scores[start:stop], indices[start:stop]))
    return scores, indices


def rerank_topk(topk_indices: Tensor,
                topk_sims: Tensor,
                pair_score_fn: PairScoreFn,
                batch_size: int,
                query_indices: Optional[Tensor] = None,
                progress: bool = True,
                desc: str = 'rerank') -> Tuple[Tensor, Tensor]:
    """Re-rank each query's candidates by matching probability + similarity.

    All ``Q * k`` (query, candidate) pairs are flattened and scored in batches
    of at most ``batch_size`` pairs by ``pair_score_fn``; the final score of a
    pair is its matching probability plus its similarity, and each query's
    candidates are sorted by it (descending, stable).

    Args:
        topk_indices (Tensor): ``[Q, k]`` candidate gallery positions.
        topk_sims (Tensor): ``[Q, k]`` their similarities.
        pair_score_fn (callable): ``(query_idx [P], cand_idx [P]) -> [P]``
            matching probabilities, both index tensors int64 on CPU.
        batch_size (int): Maximum pairs per ``pair_score_fn`` call.
        query_indices (Tensor, optional): ``[Q]`` id passed to
            ``pair_score_fn`` for each row (e.g. the global query index of a
            shard's rows). Defaults to ``arange(Q)``.
        progress (bool): Show a tqdm progress bar over pairs.
        desc (str): Progress bar label.

    Returns:
        tuple[Tensor, Tensor]: ``final_scores [Q, k]`` (descending) and the
        re-ordered ``indices [Q, k]``, on CPU.
    """
    if batch_size < 1:
        raise ValueError(f'batch_size must be positive, got {batch_size}')
    topk_indices = topk_indices.cpu().long()
    topk_sims = topk_sims.cpu().float()
    num_queries, k = topk_indices.shape
    if query_indices is None:
        query_indices = torch.arange(num_queries)
    query_indices = query_indices.cpu().long()
    if query_indices.shape != (num_queries, ):
        raise ValueError('query_indices must have shape [Q], got '
                         f'{tuple(query_indices.shape)} for Q={num_queries}')
    flat_queries = query_indices.repeat_interleave(k)
    flat_cands = topk_indices.reshape(-1)
    num_pairs = flat_cands.numel()
    probs = torch.empty(num_pairs)
    with tqdm(total=num_pairs, desc=desc, unit='pair',
              disable=not progress or num_pairs == 0) as bar:
        for start in range(0, num_pairs, batch_size):
            stop = min(start + batch_size, num_pairs)
            batch_probs = pair_score_fn(flat_queries[start:stop],
                                        flat_cands[start:stop])
            probs[start:stop] = batch_probs.detach().float().reshape(-1).cpu()
            bar.update(stop - start)
    final = probs.view(num_queries, k) + topk_sims
    final, order = final.sort(dim=1, descending=True, stable=True)
    return final, topk_indices.gather(1, order)


def as_positive_pairs(positives: Union[PositivePairs, Tensor]) -> PositivePairs:
    """A :class:`PositivePairs`, or one built from a ``txt2img`` tensor (one image per text)."""
    if isinstance(positives, PositivePairs):
        return positives
    return PositivePairs.from_txt2img(positives)


def hit_matrix(topk_indices: Tensor, query_indices: Tensor,
               positives: Union[PositivePairs, Tensor], direction: str) -> Tensor:
    """Return ``[Q, K]`` booleans: whether each retrieved item is correct.

    Args:
        topk_indices (Tensor): ``[Q, K]`` ranked gallery positions; texts for
            ``'i2t'``, images for ``'t2i'``.
        query_indices (Tensor): ``[Q]`` query positions; images for ``'i2t'``,
            texts for ``'t2i'``.
        positives (PositivePairs or Tensor): the positive (text, image) pairs,
            or ``txt2img [Nt]`` (the one image position of every text).
        direction (str): ``'i2t'`` (a retrieved text is correct if the query
            image is among its positives) or ``'t2i'`` (a retrieved image is
            correct if it is a positive of the query text).
    """
    pairs = as_positive_pairs(positives)
    topk_indices = topk_indices.long().cpu()
    query_indices = query_indices.long().cpu()[:, None]
    if direction == 'i2t':
        return pairs.contains(topk_indices, query_indices)
    if direction == 't2i':
        return pairs.contains(query_indices, topk_indices)
    raise ValueError(f"direction must be 'i2t' or 't2i', got {direction!r}")


def recall_at_k(topk_indices: Tensor,
                query_indices: Tensor,
                positives: Union[PositivePairs, Tensor],
                direction: str,
                ks: Sequence[int] = (1, 5, 10)) -> Dict[int, int]:
    """Count the queries with a correct item in their first k results.

    Counts (not ratios) are returned so that shards can be summed; a list
    shorter than k counts all of its entries. With several positives a query
    is a hit if any of them is retrieved.

    Returns:
        dict[int, int]: hit count for every k in ``ks``.
    """
    hits = hit_matrix(topk_indices, query_indices, positives, direction)
    return {int(k): int(hits[:, :k].any(dim=1).sum()) for k in ks}
