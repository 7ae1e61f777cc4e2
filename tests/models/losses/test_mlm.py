"""MLMLoss: cross-entropy averaged over the masked positions only; 0 (not NaN) with none masked."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope

from r2d2lib.models.losses import MLMLoss
from r2d2lib.models.utils import IGNORE_INDEX
from r2d2lib.registry import LOSSES

V = 7
LABELS = torch.tensor([[-100, 3, -100, 0], [6, -100, -100, 2]])


def logits(seed=0):
    return torch.randn(2, 4, V, generator=torch.Generator().manual_seed(seed)) * 2


def test_equals_cross_entropy_over_masked_positions_by_hand():
    x = logits()
    loss = MLMLoss()(x, LABELS)
    masked = [(0, 1), (0, 3), (1, 0), (1, 3)]
    want = 0.0
    for b, t in masked:
        row = x[b, t].tolist()
        want += -(row[LABELS[b, t]] - math.log(sum(math.exp(v) for v in row)))
    assert loss.item() == pytest.approx(want / len(masked), rel=1e-6)
    keep = LABELS != IGNORE_INDEX
    torch.testing.assert_close(loss, F.cross_entropy(x[keep], LABELS[keep]))


def test_ignored_positions_change_nothing_and_get_no_gradient():
    x = logits().requires_grad_()
    loss = MLMLoss()(x, LABELS)
    loss.backward()
    ignored = LABELS == IGNORE_INDEX
    assert torch.equal(x.grad[ignored], torch.zeros(int(ignored.sum()), V))
    assert (x.grad[~ignored].abs().sum(dim=-1) > 0).all()
    changed = x.detach().clone()
    changed[ignored] = torch.randn(int(ignored.sum()), V) * 10
    assert torch.equal(MLMLoss()(changed, LABELS), loss.detach())


def test_mean_is_over_masked_tokens_not_all_tokens():
    # every masked row scores its label with log-probability log(1/V): the loss is log V
    x = torch.zeros(2, 4, V)
    assert MLMLoss()(x, LABELS).item() == pytest.approx(math.log(V), rel=1e-6)


def test_no_masked_token_gives_zero_connected_to_the_graph():
    x = logits().requires_grad_()
    loss = MLMLoss()(x, torch.full((2, 4), IGNORE_INDEX))
    assert loss.item() == 0.0 and not torch.isnan(loss)
    assert loss.requires_grad
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_flat_inputs_and_fp32():
    x = logits().half()
    loss = MLMLoss()(x.reshape(-1, V), LABELS.reshape(-1))
    assert loss.dtype == torch.float32
    keep = LABELS != IGNORE_INDEX
    torch.testing.assert_close(loss, F.cross_entropy(x[keep].float(), LABELS[keep]))


def test_registered_and_ignore_index_is_torchs():
    init_default_scope('r2d2lib')
    assert isinstance(LOSSES.build(dict(type='MLMLoss')), MLMLoss) and MLMLoss.name == 'mlm'
    assert IGNORE_INDEX == -100
