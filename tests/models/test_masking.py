"""Token masking for MLM and patch keeping for the FgD student (r2d2lib.models.utils.masking)."""
import pytest
import torch

from r2d2lib.models.utils import IGNORE_INDEX, keep_patch_tokens, mask_tokens, random_patch_keep

CLS, SEP, PAD, MASK = 101, 102, 0, 103
SPECIAL = {PAD, CLS, SEP}
# two texts: [CLS] w w w [SEP] [PAD] [PAD] and [CLS] w w w w w [SEP]
IDS = torch.tensor([[CLS, 5, 6, 7, SEP, PAD, PAD], [CLS, 8, 9, 10, 11, 12, SEP]])
ATTN = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
WORDS = torch.tensor([[0, 1, 1, 1, 0, 0, 0], [0, 1, 1, 1, 1, 1, 0]], dtype=torch.bool)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_ratio_one_masks_every_word_and_nothing_else():
    masked, labels = mask_tokens(IDS, ATTN, MASK, SPECIAL, ratio=1.0, generator=gen())
    assert torch.equal(masked, torch.where(WORDS, torch.full_like(IDS, MASK), IDS))
    assert torch.equal(labels, torch.where(WORDS, IDS, torch.full_like(IDS, IGNORE_INDEX)))
    assert masked.dtype == IDS.dtype and labels.dtype == IDS.dtype
    assert torch.equal(IDS[0], torch.tensor([CLS, 5, 6, 7, SEP, PAD, PAD]))  # input untouched


def test_ratio_zero_masks_nothing():
    masked, labels = mask_tokens(IDS, ATTN, MASK, SPECIAL, ratio=0.0, generator=gen())
    assert torch.equal(masked, IDS)
    assert (labels == IGNORE_INDEX).all()


def test_padding_is_never_masked_even_if_its_id_is_not_special():
    ids = IDS.clone()
    ids[0, 5:] = 42  # padding slots holding an ordinary id
    masked, labels = mask_tokens(ids, ATTN, MASK, SPECIAL, ratio=1.0)
    assert torch.equal(masked[0, 5:], torch.tensor([42, 42]))
    assert (labels[0, 5:] == IGNORE_INDEX).all()


def test_special_ids_inside_the_text_are_never_masked():
    ids = torch.tensor([[CLS, 5, SEP, 6, SEP]])
    masked, labels = mask_tokens(ids, torch.ones_like(ids), MASK, [CLS, SEP, SEP], ratio=1.0)
    assert masked.tolist() == [[CLS, MASK, SEP, MASK, SEP]]
    assert labels.tolist() == [[-100, 5, -100, 6, -100]]
    # without special ids every real token is a candidate
    masked, _ = mask_tokens(ids, torch.ones_like(ids), MASK, [], ratio=1.0)
    assert (masked == MASK).all()


def test_labels_hold_the_original_ids_exactly_where_masked():
    g = gen(3)
    ids = torch.randint(200, 300, (6, 20), generator=g)
    ids[:, 0], ids[:, -1] = CLS, SEP
    attn = torch.ones_like(ids)
    masked, labels = mask_tokens(ids, attn, MASK, SPECIAL, ratio=0.5, generator=gen(4))
    where = masked == MASK
    assert 0 < int(where.sum()) < int(where.numel())
    assert torch.equal(labels[where], ids[where])
    assert (labels[~where] == IGNORE_INDEX).all()
    assert torch.equal(masked[~where], ids[~where])
    # the same generator seed gives the same mask
    again, _ = mask_tokens(ids, attn, MASK, SPECIAL, ratio=0.5, generator=gen(4))
    assert torch.equal(again, masked)


def test_masked_fraction_is_close_to_the_ratio():
    g = gen(5)
    ids = torch.randint(200, 300, (200, 64), generator=g)
    lengths = torch.randint(10, 65, (200,), generator=g)
    attn = (torch.arange(64)[None] < lengths[:, None]).long()
    ids[:, 0] = CLS
    ids[attn == 0] = PAD
    masked, labels = mask_tokens(ids, attn, MASK, SPECIAL, ratio=0.15, generator=gen(6))
    candidates = (attn == 1) & (ids != CLS)
    fraction = (labels != IGNORE_INDEX).sum().item() / candidates.sum().item()
    # about 7,000 candidates: the standard deviation of the fraction is about 0.004
    assert abs(fraction - 0.15) < 0.03
    assert not ((labels != IGNORE_INDEX) & ~candidates).any()


@pytest.mark.parametrize('ratio', [-0.1, 1.1])
def test_mask_tokens_bad_ratio_raises(ratio):
    with pytest.raises(ValueError, match='ratio'):
        mask_tokens(IDS, ATTN, MASK, SPECIAL, ratio=ratio)


# ---------------------------------------------------------------- patches
def test_random_patch_keep_sorted_unique_indices_of_the_right_count():
    keep = random_patch_keep(50, 16, 0.75, generator=gen(7))
    assert keep.shape == (50, 4) and keep.dtype == torch.long
    assert (keep[:, 1:] > keep[:, :-1]).all()  # ascending, hence unique
    assert keep.min() >= 0 and keep.max() <= 15
    assert len({tuple(row) for row in keep.tolist()}) > 1  # rows drawn independently
    assert set(keep.flatten().tolist()) == set(range(16))  # every patch can be kept
    assert torch.equal(keep, random_patch_keep(50, 16, 0.75, generator=gen(7)))


@pytest.mark.parametrize('num_patches, ratio, count', [
    (16, 0.0, 16), (16, 0.5, 8), (10, 0.25, 8), (9, 0.3, 6), (4, 0.99, 1), (1, 0.5, 1)])
def test_random_patch_keep_counts(num_patches, ratio, count):
    keep = random_patch_keep(3, num_patches, ratio, generator=gen(8))
    assert keep.shape == (3, count)
    if count == num_patches:
        assert torch.equal(keep, torch.arange(num_patches).expand(3, -1))


@pytest.mark.parametrize('ratio', [-0.1, 1.0, 1.5])
def test_random_patch_keep_bad_ratio_raises(ratio):
    with pytest.raises(ValueError, match='ratio'):
        random_patch_keep(2, 16, ratio)


@pytest.mark.parametrize('prefix', [1, 3])
def test_keep_patch_tokens_matches_a_loop(prefix):
    tokens = torch.randn(3, prefix + 6, 4, generator=gen(9))
    keep = torch.tensor([[0, 2, 5], [1, 3, 4], [0, 1, 2]])
    out = keep_patch_tokens(tokens, keep, prefix)
    want = torch.stack([torch.cat([tokens[b, :prefix]] + [tokens[b, prefix + k][None] for k in keep[b]])
                        for b in range(3)])
    assert out.shape == (3, prefix + 3, 4)
    assert torch.equal(out, want)


def test_keep_patch_tokens_keeping_all_is_the_identity():
    tokens = torch.randn(2, 1 + 5, 3, generator=gen(10))
    assert torch.equal(keep_patch_tokens(tokens, torch.arange(5).expand(2, -1), 1), tokens)


def test_keep_patch_tokens_propagates_gradients_to_kept_tokens_only():
    tokens = torch.randn(1, 1 + 4, 2, requires_grad=True)
    keep_patch_tokens(tokens, torch.tensor([[1, 3]]), 1).sum().backward()
    assert tokens.grad[0, :, 0].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0]


def test_keep_patch_tokens_bad_indices_raise():
    tokens = torch.randn(2, 1 + 4, 3)
    with pytest.raises(RuntimeError, match='index'):  # checked by gather, not by a host sync
        keep_patch_tokens(tokens, torch.tensor([[0, 4], [1, 2]]), 1)  # index 4 of 4 patches
    with pytest.raises(ValueError, match='patch_keep'):
        keep_patch_tokens(tokens, torch.tensor([[0, 1, 2, 3, 0]] * 2), 1)  # 5 of 4 patches
    with pytest.raises(ValueError, match='patch_keep'):
        keep_patch_tokens(tokens, torch.tensor([[0, 1]]), 1)  # batch of 1 for 2 images
