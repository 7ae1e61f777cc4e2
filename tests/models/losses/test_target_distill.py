"""TargetDistillLoss (TgD, Eq. 4-5) and its weighted cross-entropy: against GCPR and a loop version."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope

from r2d2lib.models.losses import GCPRLoss, TargetDistillLoss
from r2d2lib.models.losses.gcpr import soft_cross_entropy
from r2d2lib.models.losses.target_distill import weighted_soft_cross_entropy
from r2d2lib.models.queues import FeatureQueue
from r2d2lib.registry import LOSSES

TAU = torch.tensor(0.07)  # the model's temperature, passed in
DIM = 8


def unit(n, seed, dim=DIM):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, dim, generator=g), dim=1)


def random_targets(n, m, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, m, generator=g).softmax(dim=1)


# ---------------------------------------------------------------- weighted_soft_cross_entropy
def test_weighted_soft_cross_entropy_equals_torch_cross_entropy_with_weights():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, generator=g) * 3
    targets = random_targets(4, 6, 1)
    weights = torch.tensor([1.0, 1.0, 0.9, 0.5, 0.0, 2.0])
    got = weighted_soft_cross_entropy(logits, targets, weights)
    want = F.cross_entropy(logits, targets, weight=weights)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    # not the unweighted value: the weights matter
    assert not torch.isclose(got, F.cross_entropy(logits, targets))


def test_weighted_soft_cross_entropy_by_hand():
    logits = torch.tensor([[0.0, 1.0, 2.0], [1.0, -1.0, 0.5]])
    targets = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.25, 0.75]])
    weights = torch.tensor([1.0, 0.5, 0.25])
    want = 0.0
    for row, t in zip(logits.tolist(), targets.tolist()):
        log_z = math.log(sum(math.exp(v) for v in row))
        want += -sum(w * tj * (v - log_z) for w, tj, v in zip(weights.tolist(), t, row))
    want /= 2
    assert weighted_soft_cross_entropy(logits, targets, weights).item() == pytest.approx(want, rel=1e-6)


def test_weighted_soft_cross_entropy_with_unit_weights_is_soft_cross_entropy():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(5, 7, generator=g)
    targets = random_targets(5, 7, 3)
    got = weighted_soft_cross_entropy(logits, targets, torch.ones(7))
    assert torch.equal(got, soft_cross_entropy(logits, targets))


def test_weighted_soft_cross_entropy_is_fp32():
    logits = torch.randn(3, 4).half()
    out = weighted_soft_cross_entropy(logits, random_targets(3, 4, 0), torch.ones(4).half())
    assert out.dtype == torch.float32


# ---------------------------------------------------------------- TgD vs GCPR
def test_alpha_zero_and_empty_queue_is_gcpr_exactly_values_and_gradients():
    ids = torch.tensor([0, 1, 1, 3, 4, 0])
    empty = FeatureQueue(DIM, size=10).state()
    assert empty['image_feats'].shape == (0, DIM)

    def run(loss_fn, tgd):
        image = unit(6, 10).requires_grad_()
        text = unit(6, 11).requires_grad_()
        tau = torch.tensor(0.05, requires_grad=True)
        if tgd:
            loss = loss_fn(image, text, ids, tau, unit(6, 12), unit(6, 13), empty)
        else:
            loss = loss_fn(image, text, ids, tau)
        loss.backward()
        return loss, image.grad, text.grad, tau.grad

    tgd = run(TargetDistillLoss(alpha=0.0), True)
    gcpr = run(GCPRLoss(), False)
    for got, want in zip(tgd, gcpr):
        assert torch.equal(got, want)
    assert tgd[1].abs().sum() > 0 and tgd[3].abs() > 0


def test_teacher_targets_change_the_loss_when_alpha_is_positive():
    ids = torch.arange(4)
    image, text = unit(4, 0), unit(4, 1)
    empty = FeatureQueue(DIM, size=4).state()
    base = TargetDistillLoss(alpha=0.0)(image, text, ids, TAU, unit(4, 2), unit(4, 3), empty)
    distilled = TargetDistillLoss(alpha=0.4)(image, text, ids, TAU, unit(4, 2), unit(4, 3), empty)
    assert not torch.isclose(base, distilled)
    # and they depend on the teacher's features
    other = TargetDistillLoss(alpha=0.4)(image, text, ids, TAU, unit(4, 4), unit(4, 5), empty)
    assert not torch.isclose(distilled, other)


# ---------------------------------------------------------------- TgD vs a loop of Eq. 4-5
def loop_tgd(image, text, ids, t_image, t_text, queue, alpha, temp):
    """Eq. 4-5 with explicit loops; torch scalars (float64) so autograd gives reference gradients.

    Columns: the student's batch features (weight 1) then the queued teacher features (weight w_k).
    """
    n = image.shape[0]
    q_img, q_txt = queue['image_feats'].double(), queue['text_feats'].double()
    col_ids = ids.tolist() + queue['image_ids'].tolist()
    col_w = [1.0] * n + queue['weights'].tolist()
    m = len(col_ids)
    total = 0
    for query, t_query, columns, t_columns in (
            (image, t_image, [text[j] for j in range(n)] + [q_txt[k] for k in range(q_txt.shape[0])],
             [t_text[j] for j in range(n)] + [q_txt[k] for k in range(q_txt.shape[0])]),
            (text, t_text, [image[j] for j in range(n)] + [q_img[k] for k in range(q_img.shape[0])],
             [t_image[j] for j in range(n)] + [q_img[k] for k in range(q_img.shape[0])])):
        for i in range(n):
            sims = [(query[i] * columns[j]).sum() / temp for j in range(m)]
            log_z = torch.logsumexp(torch.stack(sims), dim=0)
            t_sims = [float((t_query[i] * t_columns[j]).sum()) / float(temp.detach()) for j in range(m)]
            t_z = sum(math.exp(s) for s in t_sims)
            same = [j for j in range(m) if col_ids[j] == ids[i].item()]
            row = 0
            for j in range(m):
                y = 1.0 / len(same) if j in same else 0.0
                y_hat = alpha * math.exp(t_sims[j]) / t_z + (1 - alpha) * y
                row = row - col_w[j] * y_hat * (sims[j] - log_z)
            total = total + row / n
    return total / 2


def filled_queue():
    """A size-5 queue after three enqueues (wrapped, weights 1, 0.8 and 0.64)."""
    queue = FeatureQueue(DIM, size=5, decay=0.8)
    queue.enqueue(unit(3, 20), unit(3, 21), torch.tensor([7, 2, 8]))
    queue.enqueue(unit(3, 22), unit(3, 23), torch.tensor([9, 1, 5]))
    queue.enqueue(unit(1, 24), unit(1, 25), torch.tensor([6]))
    state = queue.state()
    # slots 0..4 hold ids 5, 6, 8, 9, 1; 1 is also in the batch below
    assert state['image_ids'].tolist() == [5, 6, 8, 9, 1]
    torch.testing.assert_close(state['weights'], torch.tensor([0.8, 1.0, 0.64, 0.8, 0.8]))
    return state


@pytest.mark.parametrize('alpha', [0.0, 0.4, 1.0])
def test_matches_loop_version_on_a_filled_queue(alpha):
    queue = filled_queue()
    ids = torch.tensor([0, 1, 1, 3])
    image, text = unit(4, 30).double().requires_grad_(), unit(4, 31).double().requires_grad_()
    t_image, t_text = unit(4, 32).double(), unit(4, 33).double()
    tau = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    loss = TargetDistillLoss(alpha=alpha)(image, text, ids, tau, t_image, t_text, queue)
    loss.backward()

    image_ref = image.detach().clone().requires_grad_()
    text_ref = text.detach().clone().requires_grad_()
    temp_ref = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    want = loop_tgd(image_ref, text_ref, ids, t_image, t_text, queue, alpha, temp_ref)
    want.backward()
    # the module computes the cross-entropy in fp32
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    torch.testing.assert_close(image.grad, image_ref.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(text.grad, text_ref.grad, rtol=1e-5, atol=1e-6)
    # the teacher's similarities use the detached temperature: only the student logits give tau a grad
    torch.testing.assert_close(tau.grad, temp_ref.grad, rtol=1e-5, atol=1e-6)


def test_queue_weights_matter():
    queue = filled_queue()
    unweighted = dict(queue, weights=torch.ones_like(queue['weights']))
    ids = torch.tensor([0, 1, 1, 3])
    args = (unit(4, 30), unit(4, 31), ids, TAU, unit(4, 32), unit(4, 33))
    loss_fn = TargetDistillLoss(alpha=0.4)
    assert not torch.isclose(loss_fn(*args, queue), loss_fn(*args, unweighted))


# ---------------------------------------------------------------- gradients, arguments
def test_gradients_reach_the_student_only():
    queue_module = FeatureQueue(DIM, size=6, decay=0.9)
    enqueued = unit(3, 40).requires_grad_(), unit(3, 41).requires_grad_()
    queue_module.enqueue(*enqueued, torch.tensor([1, 5, 6]))
    queue = queue_module.state()
    assert not any(v.requires_grad for v in queue.values())
    image, text = unit(4, 42).requires_grad_(), unit(4, 43).requires_grad_()
    t_image, t_text = unit(4, 44).requires_grad_(), unit(4, 45).requires_grad_()
    loss = TargetDistillLoss(alpha=0.4)(image, text, torch.tensor([0, 1, 2, 2]), TAU, t_image, t_text, queue)
    loss.backward()
    assert image.grad.abs().sum() > 0 and text.grad.abs().sum() > 0
    assert t_image.grad is None and t_text.grad is None
    assert enqueued[0].grad is None and enqueued[1].grad is None
    assert all(b.grad is None for b in queue_module.buffers())


@pytest.mark.parametrize('alpha', [-0.1, 1.5])
def test_alpha_outside_unit_interval_raises(alpha):
    with pytest.raises(ValueError, match='alpha'):
        TargetDistillLoss(alpha=alpha)


def test_registered_with_defaults_and_needs_a_queue():
    init_default_scope('r2d2lib')
    loss_fn = LOSSES.build(dict(type='TargetDistillLoss'))
    assert isinstance(loss_fn, TargetDistillLoss) and loss_fn.requires_queue
    assert loss_fn.alpha == 0.4 and TargetDistillLoss(alpha=0.2).alpha == 0.2
    assert not list(loss_fn.parameters()) and not loss_fn.state_dict()  # stateless: tau is the model's


# ---------------------------------------------------------------- no copy of the queue (issue 17)
def old_tgd(image, text, ids, temp, t_image, t_text, queue, alpha):
    """The implementation before issue 17, kept line for line: batch and queue features concatenated."""
    from r2d2lib.models.losses.gcpr import id_targets
    from r2d2lib.models.utils import similarity_fp32
    queue_images, queue_texts = queue['image_feats'].detach(), queue['text_feats'].detach()
    column_ids = torch.cat([ids, queue['image_ids']])
    weights = torch.cat([torch.ones_like(ids, dtype=torch.float32), queue['weights'].float()])
    valid = queue.get('valid')
    if valid is not None:
        valid = torch.cat([torch.ones_like(ids, dtype=torch.bool), valid])
    image_columns = torch.cat([image.float(), queue_images.float()])
    text_columns = torch.cat([text.float(), queue_texts.float()])
    logits_i2t = similarity_fp32(image, text_columns, temp)
    logits_t2i = similarity_fp32(text, image_columns, temp)
    with torch.no_grad():
        ground_truth = id_targets(ids, column_ids)
        soft = TargetDistillLoss._soft_targets
        teacher_texts = torch.cat([t_text.float(), queue_texts.float()])
        teacher_images = torch.cat([t_image.float(), queue_images.float()])
        soft_i2t = soft(similarity_fp32(t_image, teacher_texts, temp), valid)
        soft_t2i = soft(similarity_fp32(t_text, teacher_images, temp), valid)
        targets_i2t = alpha * soft_i2t + (1 - alpha) * ground_truth
        targets_t2i = alpha * soft_t2i + (1 - alpha) * ground_truth
    return (weighted_soft_cross_entropy(logits_i2t, targets_i2t, weights, valid) +
            weighted_soft_cross_entropy(logits_t2i, targets_t2i, weights, valid)) / 2


def big_queue(size=64, filled=40, dim=DIM):
    queue = FeatureQueue(dim, size=size, decay=0.97)
    for start in range(0, filled, 8):
        ids = torch.arange(start, start + 8) % 13
        queue.enqueue(unit(8, 100 + start, dim), unit(8, 200 + start, dim), ids)
    return queue


@pytest.mark.parametrize('filled', [40, 64, 80])  # part-filled, just full, wrapped
@pytest.mark.parametrize('read', ['slots', 'state'])
def test_equals_the_old_concatenating_formula_values_and_gradients(filled, read):
    queue = big_queue(filled=filled)
    ids = torch.tensor([0, 1, 1, 5, 12, 7])

    def run(fn):
        image, text = unit(6, 1).requires_grad_(), unit(6, 2).requires_grad_()
        tau = torch.tensor(0.07, requires_grad=True)
        loss = fn(image, text, ids, tau, unit(6, 3), unit(6, 4), getattr(queue, read)())
        loss.backward()
        return loss, image.grad, text.grad, tau.grad

    got = run(TargetDistillLoss(alpha=0.4))
    want = run(lambda *args: old_tgd(*args, alpha=0.4))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert got[3].abs() > 0


def test_backward_after_the_queue_is_written_in_place_uses_the_queue_as_read():
    """The step enqueues (in place) between the loss and its backward pass, as the objective does."""
    queue = big_queue(filled=64)
    ids = torch.arange(4)
    image, text = unit(4, 5).requires_grad_(), unit(4, 6).requires_grad_()
    tau = torch.tensor(0.07, requires_grad=True)
    loss = TargetDistillLoss(alpha=0.4)(image, text, ids, tau, unit(4, 7), unit(4, 8), queue.slots())
    ref = [t.detach().clone().requires_grad_() for t in (image, text, tau)]
    want = old_tgd(ref[0], ref[1], ids, ref[2], unit(4, 7), unit(4, 8),
                   {k: v.clone() for k, v in queue.slots().items()}, alpha=0.4)
    queue.enqueue(unit(4, 9), unit(4, 10), ids)  # overwrites slots 0-3 in place
    loss.backward()
    want.backward()
    torch.testing.assert_close(loss, want, rtol=1e-6, atol=1e-6)
    for got, expected in zip((image.grad, text.grad, tau.grad), (r.grad for r in ref)):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


class _LargestAllocation(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the largest tensor any op creates (what a copy of the queue would be)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in torch.utils._pytree.tree_leaves((args, kwargs))
                  if isinstance(a, torch.Tensor)}
        for t in torch.utils._pytree.tree_leaves(out):  # new storage only (not in-place writes, views)
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize('loss_fn', [TargetDistillLoss(alpha=0.4), 'moco'])
def test_forward_and_backward_never_copy_the_queue(loss_fn):
    """Fails before issue 17: the columns were batch + queue features concatenated ([B + K, D])."""
    if loss_fn == 'moco':
        from r2d2lib.models.losses import MoCoLoss
        loss_fn = MoCoLoss()
    size, dim = 4096, 32
    queue = big_queue(size=size, filled=size, dim=dim)
    image, text = unit(2, 5, dim).requires_grad_(), unit(2, 6, dim).requires_grad_()
    tau = torch.tensor(0.07, requires_grad=True)
    with _LargestAllocation() as mode:
        loss = loss_fn(image, text, torch.arange(2), tau, unit(2, 7, dim), unit(2, 8, dim), queue.slots())
        queue.enqueue(unit(2, 9, dim), unit(2, 10, dim), torch.arange(2))
        loss.backward()
    assert mode.largest < size * dim // 4  # logits [2, 2 + K] and the like; a copy is K x D
    assert image.grad.abs().sum() > 0
