"""Deterministic choice among an image's texts (Zero corpus: title, content, image query).

The R2D2 paper (Appendix A) picks one of the three texts of each image at
random whenever the image is used. Here the pick is a pure function of
``(seed, epoch, index)``: the same run, resumed or not, on any number of ranks
and workers, pairs every image with the same text in the same epoch, while
each epoch draws afresh. :class:`SharedEpoch` carries the epoch into
DataLoader workers (persistent ones included).
"""
from __future__ import annotations

import torch

_MASK = (1 << 64) - 1


def splitmix64(x: int) -> int:
    """One step of the SplitMix64 mixer: a 64-bit integer hash with good avalanche."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def choose_text(seed: int, epoch: int, index: int, num_texts: int) -> int:
    """Index in ``range(num_texts)`` of the text used for sample ``index`` in ``epoch``.

    ``splitmix64(splitmix64(splitmix64(seed) ^ epoch) ^ index) % num_texts``:
    uniform up to a bias below 2**-60, independent across epochs and samples.
    """
    if num_texts < 1:
        raise ValueError(f'cannot choose among {num_texts} texts')
    h = splitmix64(splitmix64(splitmix64(seed & _MASK) ^ (epoch & _MASK)) ^ (index & _MASK))
    return h % num_texts


class SharedEpoch:
    """An epoch counter in shared memory, visible to DataLoader worker processes.

    The dataset holds it; the main process writes it (``set``) before the
    workers are given the epoch's indices, so even persistent workers read
    the new value.
    """

    def __init__(self, epoch: int = 0) -> None:
        self._value = torch.full((), epoch, dtype=torch.int64).share_memory_()

    def set(self, epoch: int) -> None:
        """Write the epoch (in place, shared)."""
        self._value.fill_(int(epoch))

    def get(self) -> int:
        """Read the epoch."""
        return int(self._value)

    def __deepcopy__(self, memo: dict) -> 'SharedEpoch':
        """A copy in shared memory too (``copy.deepcopy`` of a tensor would not share it)."""
        return SharedEpoch(self.get())
