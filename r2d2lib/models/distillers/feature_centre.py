"""The centre mu of feature-guided distillation (Eq. 6)."""
import torch
from torch import Tensor, nn

from r2d2lib.models.utils import all_gather_no_grad
from r2d2lib.registry import DISTILLERS


@DISTILLERS.register_module()
class FeatureCentre(nn.Module):
    """Momentum-updated mean of the teacher's features, subtracted before its softmax (Eq. 6).

    "mu is a momentum-updated mean of f_t(.) that centers the features". After
    each training step, with the teacher features of the whole batch (all ranks):

        mu <- m * mu + (1 - m) * mean_i f_t(x_i)

    ``m`` is not given in the paper; 0.9 is DINO's centre momentum, the scheme FgD
    follows. ``mu`` starts at 0 and lives in a buffer, so checkpoints carry it.

    Args:
        dim: feature width d.
        momentum: m.
    """

    def __init__(self, dim: int, momentum: float = 0.9):
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f'momentum must be in [0, 1], got {momentum}')
        self.momentum = momentum
        self.register_buffer('centre', torch.zeros(dim))

    @torch.no_grad()
    def update(self, teacher_feats: Tensor) -> None:
        """Move ``mu`` towards the mean of ``teacher_feats`` [n, d] gathered from every rank."""
        batch_mean = all_gather_no_grad(teacher_feats.detach()).float().mean(dim=0)
        self.centre.mul_(self.momentum).add_(batch_mean.to(self.centre), alpha=1.0 - self.momentum)
