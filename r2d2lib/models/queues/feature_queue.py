"""Weighted momentum feature queues for target-guided distillation (TgD, Sec. 3.3)."""
from typing import Dict, Optional

import torch
from torch import Tensor, nn

from r2d2lib.models.utils import all_gather_no_grad
from r2d2lib.registry import QUEUES


@QUEUES.register_module()
class FeatureQueue(nn.Module):
    """Ring buffers of recent teacher image and text features, each slot with a weight.

    TgD concatenates the current batch with these queues (Eq. 4-5) and weights
    every queued feature by its reliability: "we decay each element in the queue
    by a factor of 0.99 per iteration, except for the new incoming item". So each
    :meth:`enqueue` multiplies every weight by ``decay`` and writes the incoming
    batch, gathered from all ranks in rank order, with weight 1 at the write
    pointer, wrapping around the end. Batch sizes need not divide ``size``; a
    gathered batch larger than the queue keeps its last ``size`` rows.

    Everything lives in buffers, so checkpoints carry the queue (features, image
    ids, weights, pointer) and a resumed run continues with the same queue.
    Slots never written have image id -1 and weight 0; :meth:`filled` masks them.

    Args:
        dim: feature width (the embedding dimension).
        size: number of slots (65,536 in the paper).
        decay: per-iteration weight decay of queued features (0.99).
    """

    def __init__(self, dim: int, size: int = 65536, decay: float = 0.99):
        super().__init__()
        if size < 1 or not 0.0 <= decay <= 1.0:
            raise ValueError(f'need size >= 1 and 0 <= decay <= 1, got size={size}, decay={decay}')
        self.size, self.decay = size, decay
        self.register_buffer('image_feats', torch.zeros(size, dim))
        self.register_buffer('text_feats', torch.zeros(size, dim))
        self.register_buffer('image_ids', torch.full((size,), -1, dtype=torch.long))
        self.register_buffer('weights', torch.zeros(size))
        self.register_buffer('ptr', torch.zeros((), dtype=torch.long))

    def filled(self) -> Tensor:
        """[size] bool mask of the slots that hold a feature."""
        return self.image_ids >= 0

    def state(self) -> Dict[str, Tensor]:
        """Copies of the filled slots: features ``[K, D]``, image ids and weights ``[K]``, slot order.

        The losses that use the queue take this (read before the step's enqueue);
        an empty queue gives ``K = 0``.
        """
        filled = self.filled()
        return dict(image_feats=self.image_feats[filled], text_feats=self.text_feats[filled],
                    image_ids=self.image_ids[filled], weights=self.weights[filled])

    def slots(self) -> Dict[str, Tensor]:
        """The slots written so far, without copying: :meth:`state`'s keys plus ``valid``.

        What the training step reads. Until the queue is full these are the first ``n``
        slots (the queue fills from slot 0 on, so the filled slots are a prefix): views of
        the buffers, so an early step scores its batch against ``n`` queued features, not
        ``size``. Once full (and under ``torch.compile``, which must not see a shape that
        grows step by step) they are every slot. ``valid`` masks the slots that hold no
        feature; the losses leave those out of their softmaxes, which gives the values of
        :meth:`state` exactly. These are the buffers themselves, which :meth:`enqueue`
        writes in place after the loss and before the backward pass: a loss must not save
        them for its backward pass (see :func:`~r2d2lib.models.losses.target_distill.queue_cross_entropy`).

        The count ``n`` is kept on the host by :meth:`enqueue`; it is read from the buffers
        (a host sync) only when they were written some other way (``load_state_dict``, a
        direct copy).
        """
        if torch.compiler.is_compiling():
            n = self.size
        else:
            n = self.num_filled()
        if n == self.size:
            return dict(image_feats=self.image_feats, text_feats=self.text_feats,
                        image_ids=self.image_ids, weights=self.weights, valid=self.filled())
        return dict(image_feats=self.image_feats[:n], text_feats=self.text_feats[:n],
                    image_ids=self.image_ids[:n], weights=self.weights[:n], valid=self.image_ids[:n] >= 0)

    def _versions(self) -> tuple:
        return (self.ptr.data_ptr(), self.ptr._version, self.image_ids.data_ptr(), self.image_ids._version)

    def _cached_count(self) -> Optional[int]:
        """The host's count of filled slots, None when the buffers changed since it was taken."""
        cached = self.__dict__.get('_filled_cache')
        return cached[0] if cached is not None and cached[1] == self._versions() else None

    def num_filled(self) -> int:
        """How many slots were written: ``size`` once the ring has wrapped, else the write pointer."""
        cached = self._cached_count()
        if cached is not None:
            return cached
        count = self.size if bool(self.image_ids[-1] >= 0) else int(self.ptr)
        self.__dict__['_filled_cache'] = (count, self._versions())
        return count

    @torch.no_grad()
    def enqueue(self, image_feats: Tensor, text_feats: Tensor, image_ids: Tensor) -> None:
        """Decay every weight, then write this step's batch of all ranks with weight 1."""
        known = None if torch.compiler.is_compiling() else self._cached_count()
        image_feats = all_gather_no_grad(image_feats.detach())[-self.size:]
        text_feats = all_gather_no_grad(text_feats.detach())[-self.size:]
        image_ids = all_gather_no_grad(image_ids)[-self.size:]
        slots = (self.ptr + torch.arange(image_feats.shape[0], device=self.ptr.device)) % self.size
        self.weights.mul_(self.decay)
        self.image_feats[slots] = image_feats.to(self.image_feats.dtype)
        self.text_feats[slots] = text_feats.to(self.text_feats.dtype)
        self.image_ids[slots] = image_ids.long()
        self.weights[slots] = 1.0
        self.ptr.copy_((self.ptr + image_feats.shape[0]) % self.size)
        if known is not None:  # the rows written follow the filled prefix: the count stays on the host
            self.__dict__['_filled_cache'] = (min(self.size, known + image_feats.shape[0]), self._versions())
