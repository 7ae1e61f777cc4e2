"""Gathering tensors across ranks, with and without gradient."""
import torch
import torch.distributed.nn.functional as dist_fn
from mmengine.dist import all_gather, get_world_size
from torch import Tensor


def all_gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every rank along dim 0; gradients flow back to each rank.

    The backward pass sums the gradients of every rank's copy (reduce-scatter), so
    with per-rank losses over local rows and DDP's gradient averaging the update
    equals the single-process update on the concatenated batch.
    """
    if get_world_size() == 1:
        return x
    return torch.cat(dist_fn.all_gather(x), dim=0)


@torch.no_grad()
def all_gather_no_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every rank along dim 0, without gradient."""
    if get_world_size() == 1:
        return x
    return torch.cat(all_gather(x.contiguous()), dim=0)
