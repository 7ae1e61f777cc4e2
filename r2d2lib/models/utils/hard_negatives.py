"""Hard-negative sampling for fine-grained ranking (FGR, Sec. 3.2)."""
from typing import Tuple

import torch
from torch import Tensor


@torch.no_grad()
def sample_hard_negatives(similarity: Tensor, query_ids: Tensor, candidate_ids: Tensor,
                          temperature: float | Tensor) -> Tuple[Tensor, Tensor]:
    """Draw one negative candidate per query with probability softmax(sim / temp), same ids excluded.

    This is the official sampling (softmax over the similarities of the gathered
    batch, positives zeroed, one draw per row) done for all rows at once by inverse
    transform sampling: the fp32 softmax with same-id candidates masked to -inf (which
    renormalises over the rest exactly as zeroing their probabilities does), its
    running sum per row (in fp64, exact enough for any gathered batch), one uniform
    number per row scaled to the row's total, and ``searchsorted``. No per-row loop, no
    ``.item()``, no host sync, no failure when a half-precision softmax would
    underflow, and one random number per row (drawing one per candidate, as the
    Gumbel-max trick does, costs more than the rest on a CPU).

    Args:
        similarity: [N, M] cosine similarities of N queries with M candidates.
        query_ids: [N] image ids of the queries.
        candidate_ids: [M] image ids of the candidates.
        temperature: the contrastive temperature tau.

    Returns:
        ``(indices, valid)``: [N] candidate indices and a [N] bool mask; ``valid`` is
        False for a query whose every candidate shares its id (it has no negative;
        its index is then meaningless and must be masked out of the loss).
    """
    same_id = query_ids[:, None] == candidate_ids[None, :]
    valid = ~same_id.all(dim=1)
    logits = (similarity.float() / temperature).masked_fill(same_id, float('-inf'))
    logits = logits.masked_fill(~valid[:, None], 0.0)  # rows without a negative: any index
    cumulative = logits.softmax(dim=1).double().cumsum(dim=1)
    draws = torch.rand(cumulative.shape[0], 1, dtype=cumulative.dtype, device=cumulative.device)
    indices = torch.searchsorted(cumulative, draws * cumulative[:, -1:], right=True).squeeze(1)
    return indices.clamp_(max=cumulative.shape[1] - 1), valid
