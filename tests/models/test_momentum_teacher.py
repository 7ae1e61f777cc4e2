"""MomentumTeacher moves exactly by the EMA rule and never gets gradients; the hook times it."""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from r2d2lib.engine.hooks import MomentumUpdateHook
from r2d2lib.models.distillers import MomentumTeacher


def students():
    torch.manual_seed(0)
    return {'encoder': nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.BatchNorm1d(4)),
            'proj': nn.Linear(4, 2)}


def test_teacher_starts_equal_and_moves_by_the_ema_rule():
    studs = students()
    teacher = MomentumTeacher(momentum=0.9)
    teacher.track(studs)
    for name, student in studs.items():
        for t, s in zip(teacher[name].parameters(), student.parameters()):
            assert torch.equal(t, s) and t is not s and not t.requires_grad
    before = {n: [p.clone() for p in teacher[n].parameters()] for n in studs}
    with torch.no_grad():
        for student in studs.values():
            for p in student.parameters():
                p.add_(1.0)
    studs['encoder'][2].running_mean.fill_(3.0)
    teacher.update(studs)
    for name, student in studs.items():
        for old, t, s in zip(before[name], teacher[name].parameters(), student.parameters()):
            torch.testing.assert_close(t, 0.9 * old + 0.1 * s, rtol=0, atol=1e-7)
    assert teacher['encoder'][2].running_mean.eq(3.0).all()  # buffers are copied


def test_teacher_gets_no_gradient_and_stays_in_eval_mode():
    studs = students()
    parent = nn.Module()
    parent.student = studs['proj']
    parent.teacher = MomentumTeacher()
    parent.teacher.track(studs)
    parent.train()
    assert not parent.teacher['encoder'].training and not parent.teacher['encoder'][1].training
    x = torch.randn(3, 4)
    loss = parent.student(x).sum() + parent.teacher['proj'](x).sum()
    loss.backward()
    assert all(p.grad is None for p in parent.teacher.parameters())
    assert all(key.startswith('teachers.') for key in parent.teacher.state_dict())


def test_update_with_other_students_is_an_error():
    teacher = MomentumTeacher()
    teacher.track(students())
    with pytest.raises(KeyError, match='proj'):
        teacher.update({'encoder': students()['encoder']})
    with pytest.raises(ValueError, match='momentum'):
        MomentumTeacher(momentum=1.5)


def test_hook_updates_after_each_optimizer_step_only():
    calls = []
    objective = SimpleNamespace(teacher=object(), momentum_update=lambda model: calls.append(model))
    model = SimpleNamespace(objective=objective)
    steps = iter([True, False, True])
    runner = SimpleNamespace(model=model, optim_wrapper=SimpleNamespace(should_update=lambda: next(steps)))
    hook = MomentumUpdateHook()
    hook.before_train(runner)
    for i in range(3):  # gradient accumulation: the optimizer steps on iterations 0 and 2
        hook.after_train_iter(runner, i)
    assert calls == [model, model]


def test_hook_is_idle_for_models_without_a_teacher():
    hook = MomentumUpdateHook()
    runner = SimpleNamespace(model=nn.Linear(1, 1), optim_wrapper=None)
    hook.before_train(runner)
    hook.after_train_iter(runner, 0)  # no teacher: nothing to move, no error
