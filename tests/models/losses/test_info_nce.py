"""InfoNCELoss (CLIP) and MoCoLoss (BriVL) against loop versions; logit-scale clamping; empty queue."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope

from r2d2lib.models.heads import LogitScale
from r2d2lib.models.losses import InfoNCELoss, MoCoLoss
from r2d2lib.models.queues import FeatureQueue
from r2d2lib.registry import LOSSES

DIM = 8


def unit(n, seed, dim=DIM):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, dim, generator=g), dim=1)


def loop_clip(image, text, scale):
    """CLIP's loss per sample: row i's target is column i only."""
    n = image.shape[0]
    total = 0.0
    for i in range(n):
        for query, keys in ((image[i], text), (text[i], image)):
            sims = [scale * float(query @ keys[j]) for j in range(n)]
            log_z = math.log(sum(math.exp(s) for s in sims))
            total += -(sims[i] - log_z) / 2
    return total / n


def loop_moco(queries, keys, negatives, temp):
    """-log exp(q.k/tau) / (exp(q.k/tau) + sum_k exp(q.n_k/tau)), mean over queries."""
    total = 0.0
    for q, k in zip(queries, keys):
        pos = float(q @ k) / temp
        negs = [float(q @ n) / temp for n in negatives]
        total += -(pos - math.log(math.exp(pos) + sum(math.exp(v) for v in negs)))
    return total / queries.shape[0]


# ---------------------------------------------------------------- InfoNCE
def test_info_nce_equals_loop_with_one_hot_targets_even_for_repeated_ids():
    image, text = unit(5, 0), unit(5, 1)
    scale = LogitScale(init=0.1)
    assert scale.logit_scale.item() == pytest.approx(math.log(10.0))
    want = loop_clip(image, text, 10.0)
    repeated = InfoNCELoss()(image, text, torch.tensor([0, 0, 1, 1, 1]), scale())
    distinct = InfoNCELoss()(image, text, torch.arange(5), scale())
    assert repeated.item() == pytest.approx(want, rel=1e-5)
    assert torch.equal(repeated, distinct)  # ids are unused


@pytest.mark.parametrize('gather', [True, False])
def test_info_nce_gather_is_the_local_batch_on_one_process(gather):
    image, text = unit(4, 2), unit(4, 3)
    loss = InfoNCELoss(gather=gather)(image, text, torch.arange(4), LogitScale(init=0.07)())
    assert loss.item() == pytest.approx(loop_clip(image, text, 1 / 0.07), rel=1e-5)


def test_info_nce_logit_scale_is_clamped_to_log_max_scale():
    image, text = unit(4, 4), unit(4, 5)
    scale = LogitScale(init=0.001)  # scale 1000 > 100
    assert scale.logit_scale.item() == pytest.approx(math.log(1000.0))
    loss = InfoNCELoss()(image, text, torch.arange(4), scale())
    assert scale.logit_scale.item() == pytest.approx(math.log(100.0))
    assert scale.tau.item() == pytest.approx(0.01)
    assert loss.item() == pytest.approx(loop_clip(image, text, 100.0), rel=1e-5)
    small = LogitScale(init=0.1, max_scale=4.0)  # scale 10 > 4
    small()
    assert small.logit_scale.item() == pytest.approx(math.log(4.0))
    # below the clamp, the scale is untouched
    kept = LogitScale(init=0.5)
    kept()
    assert kept.logit_scale.item() == pytest.approx(math.log(2.0))


def test_info_nce_gradients_reach_embeddings_and_logit_scale():
    image, text = unit(4, 6).requires_grad_(), unit(4, 7).requires_grad_()
    scale = LogitScale()
    InfoNCELoss()(image, text, torch.arange(4), scale()).backward()
    assert image.grad.abs().sum() > 0 and text.grad.abs().sum() > 0
    assert scale.logit_scale.grad is not None and scale.logit_scale.grad.abs() > 0
    # d loss / d log_scale = scale * d loss / d scale; check against a finite difference
    eps = 1e-3
    up, down = LogitScale(init=0.07), LogitScale(init=0.07)
    with torch.no_grad():
        up.logit_scale.add_(eps)
        down.logit_scale.sub_(eps)
    ids, loss_fn = torch.arange(4), InfoNCELoss()
    numeric = (loss_fn(image.detach(), text.detach(), ids, up()) -
               loss_fn(image.detach(), text.detach(), ids, down())) / (2 * eps)
    assert scale.logit_scale.grad.item() == pytest.approx(numeric.item(), rel=1e-2)


# ---------------------------------------------------------------- MoCo
def filled_queue():
    queue = FeatureQueue(DIM, size=6, decay=1.0)
    queue.enqueue(unit(4, 10), unit(4, 11), torch.tensor([5, 6, 7, 8]))
    queue.enqueue(unit(4, 12), unit(4, 13), torch.tensor([9, 1, 2, 3]))  # wraps: 6 filled slots
    return queue.state()


def test_moco_equals_loop_version():
    queue = filled_queue()
    assert queue['image_feats'].shape == (6, DIM)
    image, text = unit(3, 20), unit(3, 21)
    t_image, t_text = unit(3, 22), unit(3, 23)
    loss = MoCoLoss()(image, text, torch.arange(3), torch.tensor(0.2), t_image, t_text, queue)
    want = (loop_moco(image, t_text, queue['text_feats'], 0.2)
            + loop_moco(text, t_image, queue['image_feats'], 0.2)) / 2
    assert loss.item() == pytest.approx(want, rel=1e-5)
    # the other batch members are not negatives: swapping teacher rows changes the loss
    swapped = MoCoLoss()(image, text, torch.arange(3), torch.tensor(0.2), t_image.flip(0), t_text.flip(0),
                         queue)
    assert not torch.isclose(loss, swapped)


def test_moco_with_an_empty_queue_is_zero():
    empty = FeatureQueue(DIM, size=4).state()
    image, text = unit(3, 30).requires_grad_(), unit(3, 31)
    loss = MoCoLoss()(image, text, torch.arange(3), torch.tensor(0.07), unit(3, 32), unit(3, 33), empty)
    assert loss.item() == 0.0  # log-softmax over the positive logit alone
    loss.backward()
    assert torch.equal(image.grad, torch.zeros_like(image))


def test_moco_gradients_reach_queries_and_temperature_is_fixed():
    queue = filled_queue()
    image, text = unit(3, 40).requires_grad_(), unit(3, 41).requires_grad_()
    loss_fn, tau = MoCoLoss(), torch.tensor(0.07, requires_grad=True)
    loss_fn(image, text, torch.arange(3), tau, unit(3, 42), unit(3, 43), queue).backward()
    assert image.grad.abs().sum() > 0 and text.grad.abs().sum() > 0
    assert not list(loss_fn.parameters()) and not loss_fn.state_dict()  # stateless
    assert tau.grad is None  # MoCo's tau is fixed: no gradient reaches it


def test_registered():
    init_default_scope('r2d2lib')
    info = LOSSES.build(dict(type='InfoNCELoss', gather=False))
    moco = LOSSES.build(dict(type='MoCoLoss'))
    assert isinstance(info, InfoNCELoss) and not info.requires_queue
    assert isinstance(moco, MoCoLoss) and moco.requires_queue
