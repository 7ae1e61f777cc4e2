"""Hard-negative sampling for fine-grained ranking (FGR, Sec. 3.2)."""
from typing import Tuple

import torch
from torch import Tensor


@torch.no_grad()
def sample_hard_negatives(similarity: Tensor, query_ids: Tensor, candidate_ids: Tensor,
                          temperature: float | Tensor) -> Tuple[Tensor, Tensor]:
    """Draw one negative candidate per query with probability softmax(sim / temp), same ids excluded.

    This is the official sampling (softmax over the similarities of the gathered
    batch, positives zeroed, one draw per row) done for all rows in one call with
    the Gumbel-max trick: ``argmax(logits + Gumbel noise)`` is a draw from
    ``softmax(logits)``, and masking same-id candidates with -inf renormalises over
    the rest exactly as zeroing their probabilities does. No per-row loop, no
    ``.item()``, no host sync, and no failure when fp16/bf16 softmax underflows.

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
    logits = (similarity.float() / temperature).masked_fill(same_id, float('-inf'))
    uniform = torch.rand_like(logits).clamp_(min=torch.finfo(logits.dtype).tiny)
    gumbel = -torch.log(-torch.log(uniform))
    indices = (logits + gumbel).argmax(dim=1)
    valid = ~same_id.all(dim=1)
    return indices, valid
