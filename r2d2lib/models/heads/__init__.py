"""Heads: projections and matching heads (parameters only)."""
from .linear_heads import ITMHead, ProjectionHead

__all__ = ['ITMHead', 'ProjectionHead']
