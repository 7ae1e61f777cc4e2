"""Global contrastive pre-ranking loss (GCPR, Eq. 1-2)."""
from typing import Tuple

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

    Stateless: the temperature tau of Eq. 1 is the model's (``model.temperature``), passed in.
    Every contrastive loss takes ``(image_embeds, text_embeds, image_ids, temperature)`` first;
    those with ``requires_queue`` also the momentum teacher's embeddings and the queue.

    Attributes:
        name: ``'gcpr'``, the objective logs the loss as ``loss_gcpr``.
        requires_queue: False.
    """

    name = 'gcpr'
    requires_queue = False

    @staticmethod
    def logits(image_embeds: Tensor, text_embeds: Tensor, temperature: Tensor) -> Tuple[Tensor, Tensor]:
        """Local-vs-global similarity logits: [n, n*k] image-to-text and text-to-image, fp32."""
        all_images = all_gather_with_grad(image_embeds)
        all_texts = all_gather_with_grad(text_embeds)
        return (similarity_fp32(image_embeds, all_texts, temperature),
                similarity_fp32(text_embeds, all_images, temperature))

    def forward(self, image_embeds: Tensor, text_embeds: Tensor, image_ids: Tensor,
                temperature: Tensor) -> Tensor:
        """L_GCPR for L2-normalised [n, D] embeddings of n pairs, their [n] image ids and tau."""
        logits_i2t, logits_t2i = self.logits(image_embeds, text_embeds, temperature)
        targets = id_targets(image_ids, all_gather_no_grad(image_ids))
        return (soft_cross_entropy(logits_i2t, targets) + soft_cross_entropy(logits_t2i, targets)) / 2
