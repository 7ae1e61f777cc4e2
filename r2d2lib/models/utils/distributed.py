"""Gathering tensors across ranks, with and without gradient."""
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import Tensor


def world_size() -> int:
    """Number of ranks in the default process group (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every rank along dim 0; gradients flow back to each rank.

    The backward pass sums the gradients of every rank's copy (reduce-scatter), so
    with per-rank losses over local rows and DDP's gradient averaging the update
    equals the single-process update on the concatenated batch.
    """
    if world_size() == 1:
        return x
    return torch.cat(dist_fn.all_gather(x), dim=0)


@torch.no_grad()
def all_gather_no_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every rank along dim 0, without gradient."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)
