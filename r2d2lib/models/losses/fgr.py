"""Fine-grained ranking loss (FGR, Eq. 3)."""
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from r2d2lib.registry import LOSSES


@LOSSES.register_module()
class FGRLoss(nn.Module):
    """Fine-grained ranking (Eq. 3): matched / not-matched cross-entropy of both cross encoders.

        L_FGR = 1/2 [ CE_w(g(h_I[CLS]), y) + CE_w(g(h_T[CLS]), y) ]

    As the official fine-tuning code, each positive pair comes with one hard
    negative image and one hard negative text (labels 1 : 2 negatives) and the
    cross-entropy has class weights ``[1.0, 2.0]`` (index 0 "not matched", index 1
    "matched"), i.e. ``F.cross_entropy(logits, labels, weight=[1, 2])``: the
    weighted mean ``sum_i w[y_i] ce_i / sum_i w[y_i]``. ``pair_mask`` removes pairs
    that have no valid negative (every sample in the gathered batch shares the
    query's image id) from both sums; with all pairs valid the value equals the
    official one exactly.
    """

    name = 'fgr'

    def __init__(self, class_weight: Sequence[float] = (1.0, 2.0)):
        super().__init__()
        self.register_buffer('class_weight', torch.tensor(class_weight, dtype=torch.float32),
                             persistent=False)

    def weighted_ce(self, logits: Tensor, labels: Tensor, pair_mask: Tensor) -> Tensor:
        """Class-weighted cross-entropy mean over the pairs kept by ``pair_mask``."""
        ce = F.cross_entropy(logits.float(), labels, reduction='none')
        weight = self.class_weight[labels] * pair_mask.float()
        return (weight * ce).sum() / weight.sum().clamp(min=1e-12)

    def forward(self, text_image_logits: Tensor, image_text_logits: Tensor, labels: Tensor,
                pair_mask: Tensor) -> Tensor:
        """Average of the two cross encoders' weighted ITM losses ([P, 2] logits, [P] labels)."""
        return (self.weighted_ce(text_image_logits, labels, pair_mask)
                + self.weighted_ce(image_text_logits, labels, pair_mask)) / 2
