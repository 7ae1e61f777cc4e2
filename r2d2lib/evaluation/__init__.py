"""Evaluation: retrieval ranking, positive pairs, zero-shot prompts and the metrics."""
from .metrics import MatchingMetric, RetrievalMetric, ZeroShotAccuracy, roc_auc
from .positives import PositivePairs
from .ranking import chunked_topk, hit_matrix, recall_at_k, rerank_topk
from .report import results_markdown, write_results
from .zero_shot import class_prompts, ensemble_class_embeddings, zero_shot_logits

__all__ = [
    'MatchingMetric', 'PositivePairs', 'RetrievalMetric', 'ZeroShotAccuracy', 'chunked_topk',
    'class_prompts', 'ensemble_class_embeddings', 'hit_matrix', 'recall_at_k', 'rerank_topk',
    'results_markdown', 'roc_auc', 'write_results', 'zero_shot_logits'
]
