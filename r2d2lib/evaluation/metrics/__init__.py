"""Evaluation metrics registered in ``r2d2lib.registry.METRICS``."""
from .caption import CaptionMetric
from .matching import MatchingMetric, roc_auc
from .retrieval import RetrievalMetric
from .text2image import Text2ImageMetric, frechet_distance, r_precision
from .zero_shot import ZeroShotAccuracy

__all__ = ['CaptionMetric', 'MatchingMetric', 'RetrievalMetric', 'Text2ImageMetric', 'ZeroShotAccuracy',
           'frechet_distance', 'r_precision', 'roc_auc']
