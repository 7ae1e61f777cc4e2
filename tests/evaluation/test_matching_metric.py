"""MatchingMetric: tie-aware AUC equal to sklearn, accuracy at 0.5, hand-computed cases."""
import pytest
import torch
from sklearn.metrics import roc_auc_score

from r2d2lib.evaluation import MatchingMetric, roc_auc


def test_auc_by_hand_with_ties():
    # positives 0.9, 0.5, 0.5; negatives 0.5, 0.1: pairs (pos > neg) = 1+1 + (0.5 tie) + 1 + 1 = ...
    # 0.9 beats both (2), each 0.5 ties 0.5 (0.5) and beats 0.1 (1): 2 + 1.5 + 1.5 = 5 of 6
    scores = [0.9, 0.5, 0.5, 0.5, 0.1]
    labels = [1, 1, 1, 0, 0]
    assert roc_auc(torch.tensor(scores), torch.tensor(labels)) == pytest.approx(5 / 6)


@pytest.mark.parametrize('seed', range(4))
def test_auc_equals_sklearn_on_random_scores_with_many_ties(seed):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 7, (200, ), generator=generator).double() / 6  # 7 distinct values
    labels = torch.randint(0, 2, (200, ), generator=generator)
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels.numpy(), scores.numpy()),
                                                    abs=1e-12)


def test_auc_errors_name_the_problem():
    with pytest.raises(ValueError, match='both classes'):
        roc_auc(torch.tensor([0.1, 0.2]), torch.tensor([1, 1]))
    with pytest.raises(ValueError, match='0 or 1'):
        roc_auc(torch.tensor([0.1, 0.2]), torch.tensor([1, 2]))


def test_metric_over_batches_auc_and_accuracy():
    metric = MatchingMetric()
    metric.process(None, [dict(score=torch.tensor(0.9), label=1), dict(score=0.4, label=1)])
    metric.process(None, [dict(score=0.5, label=0), dict(score=0.2, label=0)])
    metrics = metric.evaluate(4)
    # AUC: 0.9 beats both negatives, 0.4 beats 0.2 only -> 3 of 4; accuracy (>= 0.5 matched):
    # 0.9 right, 0.4 wrong, 0.5 wrong, 0.2 right -> 50%
    assert metrics == pytest.approx({'matching/AUC': 75.0, 'matching/accuracy': 50.0})


def test_nan_or_infinite_scores_are_an_error_naming_how_many():
    """Before: roc_auc gave 0.0 for NaN scores (sklearn raises) and the metric a meaningless AUC."""
    scores = torch.tensor([0.9, float('nan'), 0.2, float('inf'), float('nan'), 0.4])
    labels = torch.tensor([1, 1, 0, 0, 1, 0])
    with pytest.raises(ValueError, match=r'3 of 6 matching scores are not finite \(2 NaN, 1 infinite\)'):
        roc_auc(scores, labels)
    metric = MatchingMetric()
    metric.process(None, [dict(score=s, label=int(y)) for s, y in zip(scores.tolist(), labels.tolist())])
    with pytest.raises(ValueError, match=r'3 of 6 matching scores are not finite'):
        metric.evaluate(6)
    assert roc_auc(scores[[0, 2, 5]], labels[[0, 2, 5]]) == 1.0  # the finite ones alone are fine
