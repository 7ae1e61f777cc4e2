"""Feature-guided distillation (FgD, Eq. 6-7)."""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from r2d2lib.registry import LOSSES


@LOSSES.register_module()
class FeatureDistillLoss(nn.Module):
    """Cross-entropy between the teacher's centred, sharpened features and the student's.

        P_t = softmax((f_t - mu) / tau_t),   P_s = softmax(f_s / tau_s)          (Eq. 6)
        L_c(P_s, P_t) = -1/n sum_i sum_d P_t[i, d] log P_s[i, d]                 (one term of Eq. 7)

    over the d feature dimensions. ``mu`` (a :class:`FeatureCentre`) is applied to
    the teacher only ("we do not use mu for P_s to avoid collapse"). The model
    averages the image and the text term (Eq. 7). The teacher side carries no
    gradient.

    Args:
        student_temp: tau_s (0.1).
        teacher_temp: tau_t (0.04).
    """

    name = 'fgd'

    def __init__(self, student_temp: float = 0.1, teacher_temp: float = 0.04):
        super().__init__()
        if student_temp <= 0 or teacher_temp <= 0:
            raise ValueError(f'temperatures must be positive, got student {student_temp}, '
                             f'teacher {teacher_temp}')
        self.student_temp, self.teacher_temp = student_temp, teacher_temp

    def forward(self, student: Tensor, teacher: Tensor, centre: Tensor) -> Tensor:
        """L_c(P_s, P_t) for [n, d] student and teacher features and the [d] centre."""
        with torch.no_grad():
            teacher_probs = ((teacher.float() - centre.float()) / self.teacher_temp).softmax(dim=-1)
        student_log_probs = F.log_softmax(student.float() / self.student_temp, dim=-1)
        return -(teacher_probs * student_log_probs).sum(dim=-1).mean()
