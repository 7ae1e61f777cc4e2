"""Assembled vision-language models: architectures only (training objectives: models/objectives)."""
from .dual_encoder import DualEncoderModel
from .r2d2 import R2D2Model

__all__ = ['DualEncoderModel', 'R2D2Model']
