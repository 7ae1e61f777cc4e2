"""Samplers: mmengine's DefaultSampler that also tells the dataset the epoch.

mmengine's ``DistSamplerSeedHook`` calls ``sampler.set_epoch(epoch)`` before
every training epoch; :class:`DatasetEpochSampler` forwards the call to a
dataset with ``set_epoch`` (``ZeroCorpusDataset`` draws its text per epoch).
It registers in mmengine's root ``DATA_SAMPLERS`` (r2d2lib has no sampler
registry of its own), so ``sampler=dict(type='DatasetEpochSampler')`` works in
any scope.
"""
from __future__ import annotations

from mmengine.dataset import DefaultSampler
from mmengine.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class DatasetEpochSampler(DefaultSampler):
    """DefaultSampler (same arguments) whose ``set_epoch`` also sets the dataset's epoch."""

    def __init__(self, dataset, *args, **kwargs) -> None:
        super().__init__(dataset, *args, **kwargs)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Set the shuffling epoch and, if it has ``set_epoch``, the dataset's."""
        super().set_epoch(epoch)
        if hasattr(self.dataset, 'set_epoch'):
            self.dataset.set_epoch(epoch)
