"""Losses: features in, losses out."""
from .feature_distill import FeatureDistillLoss
from .fgr import FGRLoss
from .gcpr import GCPRLoss
from .info_nce import InfoNCELoss, MoCoLoss
from .mlm import MLMLoss
from .target_distill import TargetDistillLoss

__all__ = ['FGRLoss', 'FeatureDistillLoss', 'GCPRLoss', 'InfoNCELoss', 'MLMLoss', 'MoCoLoss',
           'TargetDistillLoss']
