"""Assembled vision-language models."""
from . import r2d2_matching  # noqa: F401  (registers R2D2MatchingModel)
from .dual_encoder import DualEncoderModel
from .r2d2 import R2D2Model

__all__ = ['DualEncoderModel', 'R2D2Model']
