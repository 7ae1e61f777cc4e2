"""The contrastive temperature as a model parameter (open_clip keeps ``logit_scale`` on the model).

The temperature tau of Eq. 1 is part of the architecture: inference uses it (zero-shot class
probabilities, the hard-negative draw of FGR), training learns it. The objective's losses take it
as an argument and keep no state of their own. Two parametrisations:

- :class:`Temperature`: tau itself (R2D2, PRD2: ``temp`` in the official checkpoints), clamped
  to ``temperature_range`` before every training step, as the official code does;
- :class:`LogitScale`: ``log(1 / tau)`` (CLIP, Chinese-CLIP: ``logit_scale``), the scale clamped to
  at most ``max_scale``.

Both are called in training (``model.temperature()``: clamp in place, then tau with its gradient)
and read in inference (``model.temperature.tau``: no clamp).
"""
import math
from typing import Sequence

import torch
from torch import Tensor, nn

from r2d2lib.registry import HEADS


@HEADS.register_module()
class Temperature(nn.Module):
    """tau of Eq. 1, learnt (``learnable``) or fixed, clamped to ``temperature_range`` in training.

    Args:
        init: initial tau (0.07).
        learnable: a parameter (the paper) or a fixed buffer (BriVL's MoCo).
        temperature_range: [min, max] of tau ([0.001, 0.5], as the official code).
    """

    def __init__(self, init: float = 0.07, learnable: bool = True,
                 temperature_range: Sequence[float] = (0.001, 0.5)):
        super().__init__()
        low, high = (float(v) for v in temperature_range)
        if not 0 < low <= high or not low <= init <= high:
            raise ValueError(f'temperature: need 0 < min <= init <= max, got init {init} and '
                             f'temperature_range {list(temperature_range)}')
        self.temperature_range = (low, high)
        value = torch.tensor(float(init))
        if learnable:
            self.temp = nn.Parameter(value)
        else:
            self.register_buffer('temp', value)

    @property
    def tau(self) -> Tensor:
        """The current tau (a scalar tensor; with gradient if learnable)."""
        return self.temp

    def forward(self) -> Tensor:
        """Clamp tau in place to its range (as the official code each step), then return it."""
        with torch.no_grad():
            self.temp.clamp_(*self.temperature_range)
        return self.temp


@HEADS.register_module()
class LogitScale(nn.Module):
    """tau as CLIP learns it: ``logit_scale = log(1 / tau)``, the scale clamped to at most ``max_scale``.

    Args:
        init: initial tau (0.07), i.e. scale 1 / 0.07.
        max_scale: upper clamp of the scale (100).
    """

    def __init__(self, init: float = 0.07, max_scale: float = 100.0):
        super().__init__()
        if init <= 0 or max_scale <= 0:
            raise ValueError(f'temperature: init and max_scale must be positive, got {init}, {max_scale}')
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init)))
        self.max_log_scale = math.log(max_scale)

    @property
    def tau(self) -> Tensor:
        """tau = 1 / scale."""
        return torch.exp(-self.logit_scale)

    def forward(self) -> Tensor:
        """Clamp the scale to at most ``max_scale`` in place (as CLIP), then return tau."""
        with torch.no_grad():
            self.logit_scale.clamp_(max=self.max_log_scale)
        return self.tau
