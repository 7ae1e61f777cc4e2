"""Losses: features (and the model's temperature) in, a loss out. Stateless."""
from .feature_distill import FeatureDistillLoss
from .fgr import FGRLoss, FGRPairs, FGRPairSampler
from .gcpr import GCPRLoss
from .info_nce import InfoNCELoss, MoCoLoss
from .mlm import MLMLoss
from .target_distill import TargetDistillLoss

__all__ = ['FGRLoss', 'FGRPairSampler', 'FGRPairs', 'FeatureDistillLoss', 'GCPRLoss', 'InfoNCELoss',
           'MLMLoss', 'MoCoLoss', 'TargetDistillLoss']
