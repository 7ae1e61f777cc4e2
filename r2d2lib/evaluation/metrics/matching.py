"""AUC and accuracy of image-text matching (ICM, IQM): is this pair matched?"""
from typing import Any, Dict, List, Optional, Sequence

import torch
from mmengine.evaluator import BaseMetric
from torch import Tensor

from r2d2lib.registry import METRICS


def check_finite(scores: Tensor) -> None:
    """Raise ``ValueError`` naming how many of ``scores`` are NaN and how many infinite."""
    scores = torch.as_tensor(scores)
    num_nan = int(torch.isnan(scores).sum())
    num_inf = int(torch.isinf(scores).sum())
    if num_nan or num_inf:
        raise ValueError(f'{num_nan + num_inf} of {scores.numel()} matching scores are not finite '
                         f'({num_nan} NaN, {num_inf} infinite): the model produced invalid scores '
                         '(an fp16 overflow?), so no AUC or accuracy can be computed')


def roc_auc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels``, tie-aware.

    The Mann-Whitney form: the probability that a random positive scores
    above a random negative, ties counting one half (average ranks), which is
    what ``sklearn.metrics.roc_auc_score`` computes. Computed in float64.

    Raises:
        ValueError: if a score is NaN or infinite (naming how many: an fp16 overflow in a
            matching head would otherwise give a meaningless AUC), the labels are not all 0/1
            or one class is absent.
    """
    scores = torch.as_tensor(scores).reshape(-1).double().cpu()
    labels = torch.as_tensor(labels).reshape(-1).long().cpu()
    if scores.shape != labels.shape:
        raise ValueError(f'{scores.numel()} scores but {labels.numel()} labels')
    check_finite(scores)
    if labels.numel() and not bool(((labels == 0) | (labels == 1)).all()):
        raise ValueError(f'labels must be 0 or 1, got values {labels.unique().tolist()}')
    num_pos = int(labels.sum())
    num_neg = labels.numel() - num_pos
    if num_pos == 0 or num_neg == 0:
        raise ValueError(f'AUC needs both classes; got {num_pos} positive and {num_neg} negative '
                         'pairs')
    _, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    # average 1-based rank of every distinct score: (first + last) / 2
    last = counts.cumsum(0).double()
    average_rank = last - (counts.double() - 1) / 2
    pos_rank_sum = average_rank[inverse][labels == 1].sum()
    return float((pos_rank_sum - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg))


@METRICS.register_module()
class MatchingMetric(BaseMetric):
    """AUC (the paper's matching metric, Table 2) and accuracy, both in percent.

    Each element given to :meth:`process` is one pair:
    ``dict(score=<P(matched)>, label=0 | 1)``. A pair is predicted matched when
    its score is at least ``threshold``. mmengine gathers the pairs of all
    ranks (in dataset order, sampler padding removed) before
    :meth:`compute_metrics`.

    Keys: ``AUC`` and ``accuracy`` (``matching/AUC`` with the default prefix). A NaN or
    infinite score is a ``ValueError`` naming how many (accuracy would count it as unmatched).

    Args:
        threshold (float): Score at and above which a pair counts as matched.
        prefix (str): Prefix of the keys.
        collect_device (str): Device used to collect results across ranks.
    """

    default_prefix: Optional[str] = 'matching'

    def __init__(self, threshold: float = 0.5, prefix: Optional[str] = 'matching',
                 collect_device: str = 'cpu') -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.threshold = float(threshold)

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Keep the score and label of every pair."""
        for sample in data_samples:
            self.results.append((float(sample['score']), int(sample['label'])))

    def compute_metrics(self, results: List[tuple]) -> Dict[str, float]:
        """AUC and accuracy over all pairs, in percent."""
        if not results:
            raise ValueError('MatchingMetric got no pairs')
        scores = torch.tensor([r[0] for r in results], dtype=torch.float64)
        labels = torch.tensor([r[1] for r in results], dtype=torch.long)
        check_finite(scores)
        predicted = (scores >= self.threshold).long()
        return dict(AUC=100.0 * roc_auc(scores, labels),
                    accuracy=100.0 * float((predicted == labels).double().mean()))
