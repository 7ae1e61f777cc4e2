"""Evaluation: retrieval ranking functions and metrics."""
from .metrics import RetrievalMetric
from .ranking import chunked_topk, hit_matrix, recall_at_k, rerank_topk

__all__ = [
    'RetrievalMetric', 'chunked_topk', 'hit_matrix', 'recall_at_k',
    'rerank_topk'
]
