"""Momentum (EMA) teacher for two-way distillation (Sec. 3.3)."""
import copy
from typing import Dict

import torch
from torch import nn

from r2d2lib.registry import DISTILLERS


@DISTILLERS.register_module()
class MomentumTeacher(nn.Module):
    """Exponential-moving-average copies of student modules; the teacher of TgD and FgD.

    "the momentum-updated encoder is the teacher ..., which contains the
    exponential-moving-average weights" (Sec. 3.3). :meth:`track` copies the
    given students once (weights included, gradients off); :meth:`update` moves
    every teacher parameter by

        theta_t <- m * theta_t + (1 - m) * theta_s,   m = 0.995 in the paper,

    and copies buffers. ``MomentumUpdateHook`` calls it after every optimizer step.
    The copies never receive gradients and stay in eval mode (no dropout), so
    their targets are deterministic. They live in this module's state dict
    (``teachers.<name>.*``), so checkpoints carry them and resume restores them.

    Args:
        momentum: m of the EMA rule.
    """

    def __init__(self, momentum: float = 0.995):
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f'momentum must be in [0, 1], got {momentum}')
        self.momentum = momentum
        self.teachers = nn.ModuleDict()

    def track(self, students: Dict[str, nn.Module]) -> None:
        """Create the teacher copies of ``students`` (name -> module), equal to them now."""
        for name, student in students.items():
            teacher = copy.deepcopy(student)
            teacher.requires_grad_(False)
            self.teachers[name] = teacher.eval()

    @torch.no_grad()
    def sync(self, students: Dict[str, nn.Module]) -> None:
        """Copy the students' current weights into the teachers exactly (after ``init_weights``)."""
        self._check_names(students)
        for name, student in students.items():
            self.teachers[name].load_state_dict(student.state_dict())

    def _check_names(self, students: Dict[str, nn.Module]) -> None:
        if students.keys() != self.teachers.keys():
            raise KeyError(f'students {sorted(students)} do not match the tracked '
                           f'{sorted(self.teachers)}')

    def train(self, mode: bool = True) -> 'MomentumTeacher':
        """Keep the teachers in eval mode whatever the parent's mode."""
        super().train(mode)
        for teacher in self.teachers.values():
            teacher.eval()
        return self

    def __getitem__(self, name: str) -> nn.Module:
        return self.teachers[name]

    @torch.no_grad()
    def update(self, students: Dict[str, nn.Module]) -> None:
        """One EMA step of every teacher towards its student (same names as :meth:`track`)."""
        self._check_names(students)
        for name, student in students.items():
            teacher = self.teachers[name]
            # one multi-tensor kernel per op instead of two per parameter (same arithmetic)
            teacher_params = list(teacher.parameters())
            torch._foreach_mul_(teacher_params, self.momentum)
            torch._foreach_add_(teacher_params, [s.detach() for s in student.parameters()],
                                alpha=1.0 - self.momentum)
            for t, s in zip(teacher.buffers(), student.buffers()):
                t.copy_(s)
