"""Assembled vision-language models."""
from .r2d2 import R2D2Model

__all__ = ['R2D2Model']
