"""Global contrastive pre-ranking loss (GCPR, Eq. 1-2)."""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from r2d2lib.models.utils import all_gather_no_grad, all_gather_with_grad, similarity_fp32
from r2d2lib.registry import LOSSES


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean over rows of ``-sum_j targets_ij * log softmax(logits)_ij``, computed in fp32."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def id_targets(query_ids: Tensor, candidate_ids: Tensor) -> Tensor:
    """Ground-truth similarity y(.,.): uniform over the candidates that share the query's image id."""
    same = (query_ids[:, None] == candidate_ids[None, :]).float()
    return same / same.sum(dim=1, keepdim=True)


@LOSSES.register_module()
class GCPRLoss(nn.Module):
    """Global contrastive pre-ranking (Eq. 1-2): symmetric InfoNCE over the batch of all ranks.

    Each rank scores its n local images against the n x k texts gathered from
    every rank (and its texts against all images), as Eq. 1 writes; the gather
    keeps gradients, so negatives from other GPUs are back-propagated too ("full
    back-propagation across k GPUs"). Targets y are one-hot, or uniform over all
    captions of the same image when a batch holds several of them.

        L_GCPR = 1/2 [ CE(s(I, T), y(I, T)) + CE(s(T, I), y(T, I)) ]      (Eq. 2)

    Args:
        temperature: initial tau of Eq. 1 (0.07).
        learnable: learn tau (as the paper) or keep it fixed.
        temperature_range: tau is clamped to this range before every use
            ([0.001, 0.5], as the official code).

    Attributes:
        name: ``'gcpr'``, the model logs the loss as ``loss_gcpr``.
        requires_queue: False; queue-based losses take the teacher and the queue too.
    """

    name = 'gcpr'
    requires_queue = False

    def __init__(self, temperature: float = 0.07, learnable: bool = True,
                 temperature_range: Tuple[float, float] = (0.001, 0.5)):
        super().__init__()
        self.temperature_range = tuple(temperature_range)
        value = torch.tensor(float(temperature))
        if learnable:
            self.temp = nn.Parameter(value)
        else:
            self.register_buffer('temp', value)

    @property
    def temperature(self) -> Tensor:
        """The current temperature tau (clamped to its range at the start of every forward)."""
        return self.temp

    @torch.no_grad()
    def clamp_temperature_(self) -> None:
        """Clamp tau in place to ``temperature_range``, as the official code does each step."""
        self.temp.clamp_(*self.temperature_range)

    def logits(self, image_embeds: Tensor, text_embeds: Tensor) -> Tuple[Tensor, Tensor]:
        """Local-vs-global similarity logits: [n, n*k] image-to-text and text-to-image, fp32."""
        all_images = all_gather_with_grad(image_embeds)
        all_texts = all_gather_with_grad(text_embeds)
        temp = self.temperature
        return similarity_fp32(image_embeds, all_texts, temp), similarity_fp32(text_embeds, all_images, temp)

    def forward(self, image_embeds: Tensor, text_embeds: Tensor, image_ids: Tensor) -> Tensor:
        """L_GCPR for L2-normalised [n, D] embeddings of n pairs and their [n] image ids."""
        self.clamp_temperature_()
        logits_i2t, logits_t2i = self.logits(image_embeds, text_embeds)
        targets = id_targets(image_ids, all_gather_no_grad(image_ids))
        return (soft_cross_entropy(logits_i2t, targets) + soft_cross_entropy(logits_t2i, targets)) / 2
