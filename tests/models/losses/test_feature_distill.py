"""FeatureDistillLoss (FgD, Eq. 6-7) by hand and the momentum-updated FeatureCentre mu."""
import math

import pytest
import torch
from mmengine.registry import init_default_scope

from r2d2lib.models.distillers import FeatureCentre
from r2d2lib.models.losses import FeatureDistillLoss
from r2d2lib.registry import DISTILLERS, LOSSES

STUDENT = [[1.0, 2.0, 0.5], [-0.5, 0.0, 1.5]]
TEACHER = [[0.2, -0.1, 0.3], [0.0, 0.4, -0.2]]


def softmax(row, temp):
    exps = [math.exp(v / temp) for v in row]
    return [e / sum(exps) for e in exps]


def by_hand(student, teacher, centre, student_temp, teacher_temp):
    """-1/n sum_i sum_d P_t[i, d] log P_s[i, d], P_t centred and sharpened (Eq. 6)."""
    total = 0.0
    for s_row, t_row in zip(student, teacher):
        p_t = softmax([t - c for t, c in zip(t_row, centre)], teacher_temp)
        p_s = softmax(s_row, student_temp)
        total += -sum(pt * math.log(ps) for pt, ps in zip(p_t, p_s))
    return total / len(student)


def test_loss_by_hand_on_a_2x3_example_with_zero_centre():
    loss = FeatureDistillLoss(student_temp=0.5, teacher_temp=0.25)(
        torch.tensor(STUDENT), torch.tensor(TEACHER), torch.zeros(3))
    want = by_hand(STUDENT, TEACHER, [0.0, 0.0, 0.0], 0.5, 0.25)
    assert loss.item() == pytest.approx(want, rel=1e-6)
    # first row written out: P_t = softmax([0.8, -0.4, 1.2]), P_s = softmax([2, 4, 1])
    e_t = [math.exp(0.8), math.exp(-0.4), math.exp(1.2)]
    log_z_s = math.log(math.exp(2) + math.exp(4) + math.exp(1))
    row0 = -sum(e / sum(e_t) * (s - log_z_s) for e, s in zip(e_t, [2.0, 4.0, 1.0]))
    row1 = by_hand(STUDENT[1:], TEACHER[1:], [0.0] * 3, 0.5, 0.25)
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_centre_is_subtracted_from_the_teacher_only():
    centre = [0.3, -0.2, 0.1]
    loss_fn = FeatureDistillLoss(student_temp=0.1, teacher_temp=0.04)
    loss = loss_fn(torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(centre))
    want = by_hand(STUDENT, TEACHER, centre, 0.1, 0.04)
    assert loss.item() == pytest.approx(want, rel=1e-5)
    # centring the student too would give another value
    wrong = by_hand([[s - c for s, c in zip(row, centre)] for row in STUDENT], TEACHER, centre, 0.1, 0.04)
    assert want != pytest.approx(wrong, rel=1e-3)
    zero_centre = loss_fn(torch.tensor(STUDENT), torch.tensor(TEACHER), torch.zeros(3))
    assert zero_centre.item() != pytest.approx(loss.item(), rel=1e-3)


def test_defaults_are_the_papers_temperatures():
    loss_fn = FeatureDistillLoss()
    assert (loss_fn.student_temp, loss_fn.teacher_temp) == (0.1, 0.04)
    loss = loss_fn(torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor([0.1, 0.0, -0.1]))
    assert loss.item() == pytest.approx(by_hand(STUDENT, TEACHER, [0.1, 0.0, -0.1], 0.1, 0.04), rel=1e-5)


def test_student_gradient_by_hand_and_no_teacher_gradient():
    student = torch.tensor(STUDENT, requires_grad=True)
    teacher = torch.tensor(TEACHER, requires_grad=True)
    centre = torch.tensor([0.3, -0.2, 0.1], requires_grad=True)
    FeatureDistillLoss(student_temp=0.5, teacher_temp=0.25)(student, teacher, centre).backward()
    assert teacher.grad is None and centre.grad is None
    # d/ds of -sum_d P_t log softmax(s / tau_s) is (P_s - P_t) / (tau_s n)
    want = []
    for s_row, t_row in zip(STUDENT, TEACHER):
        p_t = softmax([t - c for t, c in zip(t_row, [0.3, -0.2, 0.1])], 0.25)
        p_s = softmax(s_row, 0.5)
        want.append([(ps - pt) / (0.5 * 2) for ps, pt in zip(p_s, p_t)])
    torch.testing.assert_close(student.grad, torch.tensor(want), rtol=1e-5, atol=1e-7)


def test_half_inputs_are_computed_in_fp32():
    loss = FeatureDistillLoss(student_temp=0.5, teacher_temp=0.25)(
        torch.tensor(STUDENT).half(), torch.tensor(TEACHER).half(), torch.zeros(3).half())
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(by_hand(STUDENT, TEACHER, [0.0] * 3, 0.5, 0.25), rel=1e-2)


@pytest.mark.parametrize('temps', [(0.0, 0.04), (0.1, 0.0), (-0.1, 0.04), (0.1, -1.0)])
def test_non_positive_temperatures_raise(temps):
    with pytest.raises(ValueError, match='temperatures'):
        FeatureDistillLoss(*temps)


# ---------------------------------------------------------------- FeatureCentre
def test_centre_starts_at_zero_and_is_a_buffer():
    centre = FeatureCentre(dim=3)
    assert centre.momentum == 0.9
    assert torch.equal(centre.centre, torch.zeros(3))
    assert list(centre.state_dict()) == ['centre'] and not list(centre.parameters())


def test_centre_moves_by_the_momentum_rule_twice():
    centre = FeatureCentre(dim=3, momentum=0.9)
    centre.update(torch.tensor([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]))  # mean [2, 3, 4]
    torch.testing.assert_close(centre.centre, torch.tensor([0.2, 0.3, 0.4]))
    centre.update(torch.tensor([[0.0, 0.0, 0.0], [2.0, -2.0, 4.0]]))  # mean [1, -1, 2]
    # 0.9 * [0.2, 0.3, 0.4] + 0.1 * [1, -1, 2]
    torch.testing.assert_close(centre.centre, torch.tensor([0.28, 0.17, 0.56]))


def test_centre_momentum_extremes_and_no_graph():
    feats = torch.tensor([[1.0, -1.0], [3.0, 5.0]], requires_grad=True)
    follow = FeatureCentre(dim=2, momentum=0.0)
    follow.update(feats)
    assert torch.equal(follow.centre, torch.tensor([2.0, 2.0]))
    assert not follow.centre.requires_grad
    still = FeatureCentre(dim=2, momentum=1.0)
    still.update(feats)
    assert torch.equal(still.centre, torch.zeros(2))


def test_centre_survives_a_state_dict_round_trip():
    centre = FeatureCentre(dim=2, momentum=0.5)
    centre.update(torch.tensor([[4.0, 2.0]]))
    restored = FeatureCentre(dim=2, momentum=0.5)
    restored.load_state_dict(centre.state_dict())
    assert torch.equal(restored.centre, torch.tensor([2.0, 1.0]))


@pytest.mark.parametrize('momentum', [-0.1, 1.01])
def test_bad_momentum_raises(momentum):
    with pytest.raises(ValueError, match='momentum'):
        FeatureCentre(dim=3, momentum=momentum)


def test_registered():
    init_default_scope('r2d2lib')
    assert isinstance(LOSSES.build(dict(type='FeatureDistillLoss')), FeatureDistillLoss)
    centre = DISTILLERS.build(dict(type='FeatureCentre', dim=4, momentum=0.5))
    assert isinstance(centre, FeatureCentre) and centre.centre.shape == (4,) and centre.momentum == 0.5
