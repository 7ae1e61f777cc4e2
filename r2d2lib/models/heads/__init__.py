"""Heads: parameters only (projections, matching, masked-token prediction)."""
from .linear_heads import ITMHead, ProjectionHead
from .mlm_head import MLMHead

__all__ = ['ITMHead', 'MLMHead', 'ProjectionHead']
