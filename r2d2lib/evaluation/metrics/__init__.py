"""Evaluation metrics registered in ``r2d2lib.registry.METRICS``."""
from .caption import CaptionMetric
from .matching import MatchingMetric, roc_auc
from .retrieval import RetrievalMetric
from .zero_shot import ZeroShotAccuracy

__all__ = ['CaptionMetric', 'MatchingMetric', 'RetrievalMetric', 'ZeroShotAccuracy', 'roc_auc']
