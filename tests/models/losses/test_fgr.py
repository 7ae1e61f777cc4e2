"""FGRLoss (Eq. 3) by hand, and hard-negative sampling (distribution, exclusions)."""
import math

import pytest
import torch
import torch.nn.functional as F

from r2d2lib.models.losses import FGRLoss
from r2d2lib.models.utils import sample_hard_negatives


def test_fgr_equals_official_weighted_cross_entropy_by_hand():
    logits_a = torch.tensor([[0.0, 2.0], [1.0, 0.0], [0.5, 0.5]])
    logits_b = torch.tensor([[1.0, 1.0], [3.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([1, 0, 0])
    loss = FGRLoss()(logits_a, logits_b, labels, torch.ones(3, dtype=torch.bool))

    def ce(logits, y):
        return -(logits[y].item() - math.log(sum(math.exp(v) for v in logits.tolist())))

    def weighted(logits):  # weights: matched 2, not matched 1; mean over the weights
        w = [2.0, 1.0, 1.0]
        return sum(wi * ce(lg, y) for wi, lg, y in zip(w, logits, labels.tolist())) / sum(w)

    want = (weighted(logits_a) + weighted(logits_b)) / 2
    assert loss.item() == pytest.approx(want, rel=1e-6)
    official = (F.cross_entropy(logits_a, labels, weight=torch.tensor([1.0, 2.0]))
                + F.cross_entropy(logits_b, labels, weight=torch.tensor([1.0, 2.0]))) / 2
    assert loss.item() == pytest.approx(official.item(), rel=1e-6)


def test_fgr_pair_mask_drops_pairs_without_a_negative():
    logits = torch.randn(4, 2)
    labels = torch.tensor([1, 0, 0, 0])
    keep = torch.tensor([True, True, False, True])
    masked = FGRLoss()(logits, logits, labels, keep)
    subset = FGRLoss()(logits[keep], logits[keep], labels[keep], torch.ones(3, dtype=torch.bool))
    assert masked.item() == pytest.approx(subset.item(), rel=1e-6)


def test_hard_negatives_never_share_the_query_id():
    torch.manual_seed(0)
    ids = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4])
    sim = torch.randn(8, 8) + 5 * (ids[:, None] == ids[None]).float()  # positives most similar
    for _ in range(50):
        idx, valid = sample_hard_negatives(sim, ids, ids, temperature=0.05)
        assert valid.all()
        assert (ids[idx] != ids).all()


def test_hard_negatives_flag_queries_with_no_negative():
    ids = torch.tensor([3, 3, 3])
    idx, valid = sample_hard_negatives(torch.randn(3, 3), ids, ids, temperature=0.07)
    assert not valid.any()
    mixed = torch.tensor([3, 3, 5])
    idx, valid = sample_hard_negatives(torch.randn(2, 3), mixed[:2], mixed, temperature=0.07)
    assert valid.all() and (idx == 2).all()


def test_hard_negatives_follow_softmax_of_similarity_over_temperature():
    torch.manual_seed(0)
    sim = torch.tensor([[0.9, 0.3, 0.1, 0.2, -0.5]]).repeat(40000, 1)
    query_ids = torch.zeros(40000, dtype=torch.long)
    cand_ids = torch.tensor([0, 1, 2, 3, 4])
    idx, _ = sample_hard_negatives(sim, query_ids, cand_ids, temperature=0.2)
    freq = torch.bincount(idx, minlength=5).float() / idx.numel()
    want = F.softmax(torch.tensor([float('-inf'), 0.3, 0.1, 0.2, -0.5]) / 0.2, dim=0)
    assert freq[0] == 0
    torch.testing.assert_close(freq, want, atol=0.01, rtol=0)


def test_hard_negatives_work_in_half_precision_where_softmax_underflows():
    sim = torch.tensor([[1.0, -1.0, -1.0]], dtype=torch.float16)
    idx, valid = sample_hard_negatives(sim, torch.tensor([0]), torch.tensor([0, 1, 2]), 0.001)
    assert valid.all() and idx.item() in (1, 2)
