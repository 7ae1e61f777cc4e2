"""Gradient checkpointing: recompute a block's activations in the backward pass instead of storing them."""
from typing import Any, Callable

import torch
from torch.utils.checkpoint import checkpoint


def checkpointed_call(block: Callable[..., Any], *args: Any, enabled: bool = True) -> Any:
    """``block(*args)``, checkpointed when ``enabled`` and gradients are being recorded.

    Non-reentrant checkpointing (``use_reentrant=False``): it works when only some
    inputs require grad, restores the RNG state (dropout draws the same masks in the
    recomputation, so the gradients are those of the plain call) and composes with
    autocast and ``torch.compile``.
    """
    if enabled and torch.is_grad_enabled():
        return checkpoint(block, *args, use_reentrant=False)
    return block(*args)
