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


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> float:
    expected = probs * counts.sum()
    keep = expected > 0
    return float(((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum())


def test_hard_negatives_pass_a_chi_square_test_against_the_official_probabilities():
    """100 candidates (blocks of 16, padded to 112), 3 of them excluded; 200,000 draws with seed 0.

    The official weights are softmax(sim / t) with the same ids zeroed, as torch.multinomial reads
    them; the statistic over the 97 drawable candidates (df 96) must stay under the 0.999 quantile
    of chi-square(96), 143.4 (scipy.stats.chi2.ppf(0.999, 96)), and the excluded ones never drawn.
    """
    gen = torch.Generator().manual_seed(1)
    sim = torch.rand(1, 100, generator=gen) * 2 - 1
    cand_ids = torch.arange(100)
    cand_ids[[10, 57]] = 7  # two more candidates share the query's image id 7
    rows = 200_000
    torch.manual_seed(0)
    idx, valid = sample_hard_negatives(sim.expand(rows, 100), torch.full((rows,), 7), cand_ids, 0.3)
    weights = F.softmax(sim[0] / 0.3, dim=0).masked_fill(cand_ids == 7, 0)  # lines 81-93
    probs = weights / weights.sum()
    counts = torch.bincount(idx, minlength=100).double()
    assert valid.all() and counts[cand_ids == 7].sum() == 0
    assert chi_square(counts, probs.double()) < 143.4
    # and a biased sampler fails it: the same counts against probabilities off by 5 % on 10 candidates
    wrong = probs.double().clone()
    wrong[:20:2] *= 1.05
    assert chi_square(counts, wrong / wrong.sum()) > 143.4


def test_hard_negatives_keep_tiny_probabilities_at_a_small_temperature():
    """t = 0.01: the positive (cos 0.95) would take all mass; among the rest, 0.50 vs 0.45 is e^5."""
    sim = torch.tensor([[0.95, 0.50, 0.45, -0.9]]).expand(40_000, 4)
    torch.manual_seed(0)
    idx, valid = sample_hard_negatives(sim, torch.zeros(40_000, dtype=torch.long), torch.arange(4), 0.01)
    freq = torch.bincount(idx, minlength=4).double() / 40_000
    assert valid.all() and freq[0] == 0 and freq[3] == 0  # e^-140 relative: never
    assert freq[2].item() == pytest.approx(1 / (1 + math.exp(5)), abs=0.002)  # 0.0067


def test_hard_negative_exclusion_by_ranks_equals_the_boolean_mask():
    from r2d2lib.models.utils.hard_negatives import exclusion_logits
    gen = torch.Generator().manual_seed(0)
    query = torch.randint(-5, 40, (37,), generator=gen) * (1 << 40)  # large ids, repeats, negatives
    cands = torch.cat([query, torch.randint(-5, 40, (300,), generator=gen) * (1 << 40)])
    out = torch.empty(37, 337)
    exclusion_logits(query, cands, out)
    same = query[:, None] == cands[None, :]
    assert torch.equal(out == -1e30, same) and torch.equal(out == 0, ~same)
    sim = torch.randn(37, 337, generator=gen)
    torch.manual_seed(3)
    by_ranks = sample_hard_negatives(sim, query, cands, 0.05)
    torch.manual_seed(3)
    by_mask = sample_hard_negatives(sim, query, cands, 0.05, same_id=same)
    assert torch.equal(by_ranks[0], by_mask[0]) and torch.equal(by_ranks[1], by_mask[1])
    assert not same[torch.arange(37), by_ranks[0]].any()


def test_fgr_pairs_index_the_distinct_images_in_the_official_order():
    """Pairs: (image_i, text_i), (neg image of text_i, text_i), (image_i, neg text of image_i)."""
    from r2d2lib.models.losses import FGRPairSampler
    torch.manual_seed(0)
    tokens, hidden = torch.randn(4, 3, 8), torch.randn(4, 5, 8)
    mask, ids = torch.ones(4, 5, dtype=torch.long), torch.arange(4)
    embeds = F.normalize(torch.randn(4, 8), dim=1)
    torch.manual_seed(1)
    pairs = FGRPairSampler(0.5).pairs(tokens, hidden, mask, ids, embeds, embeds.flip(0), torch.tensor(0.07))
    torch.manual_seed(1)
    neg_image, _, neg_text, _ = FGRPairSampler(0.5).draw(ids, embeds, embeds.flip(0), torch.tensor(0.07))
    assert pairs.image_source is tokens  # one rank: no copy, each image once
    assert torch.equal(pairs.image_index, torch.cat([ids, neg_image, ids]))
    assert torch.equal(pairs.image_tokens, torch.cat([tokens, tokens[neg_image], tokens]))
    assert torch.equal(pairs.text_hidden, torch.cat([hidden, hidden, hidden[neg_text]]))
