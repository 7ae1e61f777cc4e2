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


class _QueueCrossEntropy(torch.autograd.Function):
    """:func:`queue_cross_entropy`: the loss and its gradients in one forward pass."""

    @staticmethod
    def forward(ctx, batch_logits: Tensor, queries: Tensor, temperature, queue: Tensor, targets: Tensor,
                weights: Tensor, valid: Optional[Tensor]) -> Tensor:
        with torch.autocast(device_type=queries.device.type, enabled=False):
            queue = queue.float()  # no copy for the fp32 queue
            queue_logits = queries.float() @ queue.t() / temperature
            logits = torch.cat([batch_logits.float(), queue_logits], dim=1)
            if valid is not None:
                logits = logits.masked_fill(~valid, float('-inf'))
            log_probs = F.log_softmax(logits, dim=1)
            probs = log_probs.exp()
            if valid is not None:
                log_probs = log_probs.masked_fill(~valid, 0.0)
            weighted = weights.float()[None, :] * targets.float()
            loss = -(weighted * log_probs).sum(dim=1).mean()
            needs_batch, needs_queries, needs_temperature = ctx.needs_input_grad[:3]
            grads = [None, None, None]
            if needs_batch or needs_queries or needs_temperature:
                # d loss / d logits_ij = (p_ij sum_k w_k y_ik - w_j y_ij) / n; 0 where not valid
                grad_logits = (probs * weighted.sum(dim=1, keepdim=True) - weighted) / logits.shape[0]
                if valid is not None:
                    grad_logits = grad_logits.masked_fill(~valid, 0.0)
                grad_queue = grad_logits[:, batch_logits.shape[1]:]
                if needs_batch:
                    grads[0] = grad_logits[:, :batch_logits.shape[1]].to(batch_logits.dtype)
                if needs_queries:
                    grads[1] = (grad_queue @ queue / temperature).to(queries.dtype)
                if needs_temperature:
                    grads[2] = (-(grad_queue * queue_logits).sum() / temperature).reshape(temperature.shape)
        ctx.save_for_backward(*grads)
        return loss

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grads = [None if g is None else g * grad_output.to(g.dtype) for g in ctx.saved_tensors]
        return grads[0], grads[1], grads[2], None, None, None, None


def queue_cross_entropy(batch_logits: Tensor, queries: Tensor, temperature: Tensor, queue: Tensor,
                        targets: Tensor, weights: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """``weighted_soft_cross_entropy([batch_logits | queries @ queue.T / tau], targets, weights, valid)``
    without copying the queue and without keeping it for the backward pass.

    ``batch_logits`` [n, B] (any autograd graph), ``queries`` [n, D], ``queue`` [K, D] (no gradient:
    a feature queue's buffers), ``targets`` [n, B + K], ``weights`` and ``valid`` [B + K]. The
    queue's columns are scored in fp32 with autocast off, as :func:`similarity_fp32` does.

    Why a function of its own: the queue's buffers are written in place by the step's enqueue,
    after the loss and before the backward pass, so autograd cannot keep them for the gradient
    of ``queries @ queue.T`` (the old code concatenated batch and queue features, which copied
    the whole queue four times a step, 4 x [B + 65,536, 768] fp32 = 768 MiB). Here the forward
    pass also computes the gradients (with respect to the batch logits, the queries and the
    temperature) while the queue is read; the backward pass scales them by the incoming
    gradient. The loss is a scalar, so this is its exact gradient; the arithmetic is that of
    autograd's up to rounding (tests/models/losses/test_target_distill.py compares both).
    Second derivatives are not supported. An empty queue has nothing to copy: then this is
    :func:`weighted_soft_cross_entropy` of the batch logits, autograd's arithmetic bit for bit.
    """
    if queue.shape[0] == 0:
        return weighted_soft_cross_entropy(batch_logits, targets, weights, valid)
    return _QueueCrossEntropy.apply(batch_logits, queries, temperature, queue, targets, weights, valid)


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
        # batch columns and queue columns apart: the queue is never concatenated (copied)
        batch_i2t = similarity_fp32(image_embeds, all_gather_with_grad(text_embeds), temp)
        batch_t2i = similarity_fp32(text_embeds, all_gather_with_grad(image_embeds), temp)
        with torch.no_grad():
            ground_truth = id_targets(image_ids, column_ids)
            teacher_image, teacher_text = teacher_image.detach(), teacher_text.detach()
            soft_i2t = self._soft_targets(torch.cat([
                similarity_fp32(teacher_image, all_gather_no_grad(teacher_text), temp),
                similarity_fp32(teacher_image, queue_texts, temp)], dim=1), valid)
            soft_t2i = self._soft_targets(torch.cat([
                similarity_fp32(teacher_text, all_gather_no_grad(teacher_image), temp),
                similarity_fp32(teacher_text, queue_images, temp)], dim=1), valid)
            targets_i2t = self.alpha * soft_i2t + (1 - self.alpha) * ground_truth
            targets_t2i = self.alpha * soft_t2i + (1 - self.alpha) * ground_truth
        i2t = queue_cross_entropy(batch_i2t, image_embeds, temp, queue_texts, targets_i2t, weights, valid)
        t2i = queue_cross_entropy(batch_t2i, text_embeds, temp, queue_images, targets_t2i, weights, valid)
        return (i2t + t2i) / 2

    @staticmethod
    def _soft_targets(logits: Tensor, valid: Optional[Tensor]) -> Tensor:
        """The teacher's softmax over the valid columns (0 on the others)."""
        if valid is not None:
            logits = logits.masked_fill(~valid, float('-inf'))
        return logits.softmax(dim=1)
