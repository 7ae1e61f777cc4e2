"""Losses: features in, losses out."""
from .fgr import FGRLoss
from .gcpr import GCPRLoss

__all__ = ['FGRLoss', 'GCPRLoss']
