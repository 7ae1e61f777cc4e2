"""Hard-negative sampling for fine-grained ranking (FGR, Sec. 3.2)."""
import math
from typing import Optional, Tuple

import torch
from torch import Tensor

# the logit of an excluded candidate: exp(-1e30 - max) is 0 in fp32, as exp(-inf) is
EXCLUDED = 1e30


@torch.no_grad()
def sample_hard_negatives(similarity: Tensor, query_ids: Tensor, candidate_ids: Tensor,
                          temperature: float | Tensor,
                          same_id: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Draw one negative candidate per query with probability softmax(sim / temp), same ids excluded.

    The official sampling (``r2d2_retrieval.py`` lines 81-93 and 49-54: softmax over the
    similarities of the gathered batch, same-id candidates zeroed, one
    ``torch.multinomial(weights[i], 1)`` per row) done for all rows at once by two-level
    inverse transform sampling:

    1. ``p = softmax(sim / temp)`` in fp32 with the same-id candidates at ``-inf`` (the
       renormalisation over the rest that zeroing their weights gives, without the underflow of
       a softmax whose positive dominates at a small ``temp``);
    2. the row cut into blocks of ``S ~ sqrt(M)`` candidates; a block ``k`` drawn with probability
       ``P_k / P`` (block sums ``P_k``, their running sum in fp64, one uniform per row);
    3. a candidate ``j`` in that block drawn with probability ``p_j / P_k`` (the block's running
       sum in fp64, a second uniform per row): overall ``p_j / P``, the official distribution.

    Each step finds the first running sum ``>= (1 - u) x total`` (``u`` uniform in [0, 1), so the
    target lies in (0, total]): a candidate or block of weight 0 is never drawn. Two random numbers
    per row instead of one per candidate (``torch.multinomial`` draws an exponential variate per
    candidate, which costs more than the rest on a CPU), a running sum over ``M / S + S``
    numbers per row instead of ``M``, no per-row loop, no ``.item()``, no host sync.

    Args:
        similarity: [N, M] cosine similarities of N queries with M candidates.
        query_ids: [N] image ids of the queries.
        candidate_ids: [M] image ids of the candidates.
        temperature: the contrastive temperature tau.
        same_id: the [N, M] mask ``query_ids[:, None] == candidate_ids[None, :]`` if already made
            (both directions of FGR share it).

    Returns:
        ``(indices, valid)``: [N] candidate indices and a [N] bool mask; ``valid`` is
        False for a query whose every candidate shares its id (it has no negative;
        its index is then meaningless, though within [0, M), and must be masked out of the loss).
    """
    n, m = similarity.shape
    size = 1 << max(0, math.ceil(math.log2(math.sqrt(m))))  # block size S: a power of 2 near sqrt(M)
    blocks = -(-m // size)
    logits = similarity.new_empty((n, blocks * size), dtype=torch.float32)
    if blocks * size > m:
        logits[:, m:] = -EXCLUDED  # padding: weight 0
    if same_id is None and n + m > 2 ** 22:
        same_id = query_ids[:, None] == candidate_ids[None, :]
    if same_id is None:
        exclusion_logits(query_ids, candidate_ids, out=logits[:, :m])
    else:
        logits[:, :m] = 0
        logits[:, :m].masked_fill_(same_id, -EXCLUDED)
    if isinstance(temperature, Tensor):
        logits[:, :m].addcmul_(similarity, temperature.float().reciprocal())  # + sim / temp
    else:
        logits[:, :m].add_(similarity, alpha=1 / temperature)
    valid = logits.amax(dim=1) > -EXCLUDED  # an excluded logit is -1e30 exactly (sim / temp is absorbed)
    probs = logits.softmax(dim=1).view(n, blocks, size)
    cumulative = probs.sum(dim=2).cumsum(dim=1, dtype=torch.float64)  # [N, blocks]
    targets = 1 - torch.rand(n, 2, dtype=torch.float64, device=logits.device)  # in (0, 1]
    block = torch.searchsorted(cumulative, targets[:, :1] * cumulative[:, -1:])  # [N, 1]
    inner = torch.take_along_dim(probs, block[:, :, None], dim=1)[:, 0].cumsum(dim=1, dtype=torch.float64)
    offset = torch.searchsorted(inner, targets[:, 1:] * inner[:, -1:])
    return block.mul_(size).add_(offset).view(n).clamp_(max=m - 1), valid


def exclusion_logits(query_ids: Tensor, candidate_ids: Tensor, out: Tensor) -> Tensor:
    """Write -1e30 where a candidate shares the query's id, else 0, into ``out`` [N, M].

    Without a boolean [N, M] mask (comparing int64 ids and filling through a mask cost a CPU 4-5x
    the float arithmetic): the ids become their ranks ``r`` among the sorted query and candidate
    ids (equal ids, equal ranks), scaled to ``2e30 r`` in fp32; ``d = 2e30 (r_q - r_c)`` is 0 exactly
    for the same id (the same fp32 number twice) and at least 1e30 in magnitude otherwise (rounding
    moves each scaled rank by less than ``2e30 r 2^-24 <= 0.5e30`` while ``N + M <= 2^22``), so
    ``min(|d|, 1e30) - 1e30`` is the mask: four passes over [N, M].
    """
    if query_ids.numel() + candidate_ids.numel() > 2 ** 22:
        raise ValueError('exclusion_logits needs at most 2^22 ids; pass same_id to sample_hard_negatives')
    ids = torch.cat([query_ids, candidate_ids])
    ranks = torch.searchsorted(ids.sort().values, ids).float().mul_(2 * EXCLUDED)
    n = query_ids.shape[0]
    return torch.sub(ranks[:n, None], ranks[n:], out=out).abs_().clamp_(max=EXCLUDED).sub_(EXCLUDED)
