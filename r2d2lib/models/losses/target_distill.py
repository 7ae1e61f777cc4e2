"""Target-guided distillation (TgD, Eq. 4-5): GCPR with momentum soft targets and weighted queues."""
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from r2d2lib.models.utils import all_gather_no_grad, all_gather_with_grad, similarity_fp32
from r2d2lib.registry import LOSSES

from .gcpr import GCPRLoss, id_targets


def weighted_soft_cross_entropy(logits: Tensor, targets: Tensor, weights: Tensor,
                                valid: Optional[Tensor] = None) -> Tensor:
    """L_w: ``mean_i( -sum_j w_j * targets_ij * log softmax(logits_i)_j )``, computed in fp32.

    The weight of column j scales its term of the cross-entropy; the softmax itself
    is unweighted. This is exactly ``F.cross_entropy(logits, targets, weight=w)`` with
    probability targets, and with all weights 1 it is the plain cross-entropy L_c.
    ``valid`` [M] (optional) removes columns from the softmax and the sum, as if they
    were not there.
    """
    logits = logits.float()
    if valid is None:
        return -(weights.float()[None, :] * targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    log_probs = F.log_softmax(logits.masked_fill(~valid, float('-inf')), dim=1).masked_fill(~valid, 0.0)
    return -(weights.float()[None, :] * targets * log_probs).sum(dim=1).mean()


@LOSSES.register_module()
class TargetDistillLoss(GCPRLoss):
    """GCPR with target-guided distillation, L_GCPR^TgD (Eq. 4-5).

    Columns ("all texts T_q"): the current batch of every rank (student features,
    gathered with gradient, weight 1) followed by the filled slots of the text
    queue (teacher features of earlier iterations, weight w_k). Likewise for images.
    With ``s(.)`` the softmax over a row and ``y`` the ground truth (uniform over
    the columns with the query's image id, queued ones included):

        y_hat(I, T_q) = alpha * s(I_m, T_q^m) + (1 - alpha) * y(I, T_q)          (Eq. 4)
        L = 1/2 [ L_w(s(I, T_q), y_hat(I, T_q); w) + L_w(s(T, I_q), y_hat(T, I_q); w) ]   (Eq. 5)
        L_w(s, y_hat; w) = -1/n sum_i sum_j w_j y_hat_ij log s_ij

    where ``I_m`` are the momentum teacher's image features and ``T_q^m`` the
    teacher's features of the batch followed by the same queue. The paper leaves
    L_w implicit; we weight each column's term of the cross-entropy (torch's
    ``cross_entropy(weight=...)`` semantics) because (1) with all weights 1 it is
    L_c of Eq. 2, so TgD with ``alpha = 0`` and an empty queue is GCPR exactly, and
    (2) a stale queued feature then pulls its query less (its target mass counts
    w_k times) while it still serves as a negative in the softmax.

    The teacher's similarities use the same (detached) temperature as the student's.

    Args:
        alpha: weight of the teacher's soft targets (0.4).
    """

    requires_queue = True

    def __init__(self, alpha: float = 0.4):
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f'alpha must be in [0, 1], got {alpha}')
        self.alpha = alpha

    def forward(self, image_embeds: Tensor, text_embeds: Tensor, image_ids: Tensor, temperature: Tensor,
                teacher_image: Tensor, teacher_text: Tensor, queue: Dict[str, Tensor]) -> Tensor:
        """L_GCPR^TgD for [n, D] student and teacher embeddings, tau and the queue's state.

        ``queue``: read before this step's enqueue: ``FeatureQueue.state()`` (the filled
        slots) or ``FeatureQueue.slots()`` (every slot and a ``valid`` mask; the empty
        slots are left out of every softmax and sum, which gives the same value).
        Logits and softmaxes are fp32 under autocast (:func:`similarity_fp32`).
        """
        temp = temperature
        queue_images, queue_texts = queue['image_feats'].detach(), queue['text_feats'].detach()
        all_ids = all_gather_no_grad(image_ids)
        column_ids = torch.cat([all_ids, queue['image_ids']])
        weights = torch.cat([torch.ones_like(all_ids, dtype=torch.float32), queue['weights'].float()])
        valid = queue.get('valid')
        if valid is not None:
            valid = torch.cat([torch.ones_like(all_ids, dtype=torch.bool), valid])
        image_columns = torch.cat([all_gather_with_grad(image_embeds).float(), queue_images.float()])
        text_columns = torch.cat([all_gather_with_grad(text_embeds).float(), queue_texts.float()])
        logits_i2t = similarity_fp32(image_embeds, text_columns, temp)
        logits_t2i = similarity_fp32(text_embeds, image_columns, temp)
        with torch.no_grad():
            ground_truth = id_targets(image_ids, column_ids)
            teacher_texts = torch.cat([all_gather_no_grad(teacher_text).float(), queue_texts.float()])
            teacher_images = torch.cat([all_gather_no_grad(teacher_image).float(), queue_images.float()])
            soft_i2t = self._soft_targets(similarity_fp32(teacher_image.detach(), teacher_texts, temp), valid)
            soft_t2i = self._soft_targets(similarity_fp32(teacher_text.detach(), teacher_images, temp), valid)
            targets_i2t = self.alpha * soft_i2t + (1 - self.alpha) * ground_truth
            targets_t2i = self.alpha * soft_t2i + (1 - self.alpha) * ground_truth
        return (weighted_soft_cross_entropy(logits_i2t, targets_i2t, weights, valid) +
                weighted_soft_cross_entropy(logits_t2i, targets_t2i, weights, valid)) / 2

    @staticmethod
    def _soft_targets(logits: Tensor, valid: Optional[Tensor]) -> Tensor:
        """The teacher's softmax over the valid columns (0 on the others)."""
        if valid is not None:
            logits = logits.masked_fill(~valid, float('-inf'))
        return logits.softmax(dim=1)
