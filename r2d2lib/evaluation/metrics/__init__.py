"""Evaluation metrics registered in ``r2d2lib.registry.METRICS``."""
from .retrieval import RetrievalMetric

__all__ = ['RetrievalMetric']
