"""Heads: parameters only (projections, matching, masked-token prediction, the contrastive temperature)."""
from .linear_heads import ITMHead, ProjectionHead
from .mlm_head import MLMHead
from .positions import PositionalTokenProjection, sincos_2d
from .temperature import LogitScale, Temperature

__all__ = ['ITMHead', 'LogitScale', 'MLMHead', 'PositionalTokenProjection', 'ProjectionHead', 'Temperature',
           'sincos_2d']
