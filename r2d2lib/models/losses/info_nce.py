"""Contrastive losses of the dual encoders R2D2 is compared with: CLIP and BriVL (WenLan)."""
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from mmengine.dist import get_rank
from torch import Tensor, nn

from r2d2lib.models.utils import all_gather_with_grad, similarity_fp32
from r2d2lib.registry import LOSSES

from .target_distill import queue_cross_entropy


@LOSSES.register_module()
class InfoNCELoss(nn.Module):
    """CLIP's symmetric InfoNCE: one-hot targets, learnable logit scale (Radford et al., 2021).

        L = 1/2 [ CE(scale * I T^T, diag) + CE(scale * T I^T, diag) ]

    Each rank scores its n images against the texts of all ranks (gathered with
    gradient) and vice versa; the target of pair i is its own partner only, even
    when another caption of the same image is in the batch (unlike GCPR's id
    targets). The scale 1 / tau is the model's (CLIP learns it as ``logit_scale``, see
    :class:`~r2d2lib.models.heads.LogitScale`), passed in as tau.

    Args:
        gather: contrast with the batch of all ranks (CLIP) or the local batch only.
    """

    name = 'info_nce'
    requires_queue = False

    def __init__(self, gather: bool = True):
        super().__init__()
        self.gather = gather

    def forward(self, image_embeds: Tensor, text_embeds: Tensor, image_ids: Tensor,
                temperature: Tensor) -> Tensor:
        """L_InfoNCE for L2-normalised [n, D] embeddings and tau (``image_ids`` unused: one-hot targets)."""
        if self.gather:
            all_images, all_texts = all_gather_with_grad(image_embeds), all_gather_with_grad(text_embeds)
        else:
            all_images, all_texts = image_embeds, text_embeds
        n = image_embeds.shape[0]
        offset = get_rank() * n if self.gather else 0
        labels = torch.arange(offset, offset + n, device=image_embeds.device)
        return (F.cross_entropy(similarity_fp32(image_embeds, all_texts, temperature), labels) +
                F.cross_entropy(similarity_fp32(text_embeds, all_images, temperature), labels)) / 2


@LOSSES.register_module()
class MoCoLoss(nn.Module):
    """BriVL's cross-modal MoCo loss (Huo et al., 2021, "WenLan"): momentum keys, queued negatives.

    Each image query (student) is contrasted with the momentum text encoder's key of
    its own text (the positive) and the queued momentum text keys of earlier
    iterations (the negatives); likewise each text query with image keys:

        L_i2t = -1/n sum_i log exp(q_i . k_i / tau) / (exp(q_i . k_i / tau) + sum_k exp(q_i . n_k / tau))
        L = (L_i2t + L_t2i) / 2

    The queue is filled with the keys of every rank after each step (MoCo's
    shuffled-BN trick is not needed: the encoders have no batch norm). Queue
    weights are not used (configure the queue with ``decay=1.0``). The BriVL
    abstract gives no hyper-parameters; MoCo's fixed tau of 0.07 is the model's
    ``temperature=dict(type='Temperature', init=0.07, learnable=False)``.
    """

    name = 'moco'
    requires_queue = True

    @staticmethod
    def _one_way(queries: Tensor, keys: Tensor, negatives: Tensor, valid: Optional[Tensor],
                 temperature: Tensor) -> Tensor:
        """fp32 logits [n, 1 + K]: the positive key first, then the queued negatives (``valid`` ones)."""
        queries, keys = queries.float(), keys.detach().float()
        positive = (queries * keys).sum(dim=1, keepdim=True) / temperature
        # the queue is neither copied nor kept for the backward pass (enqueue writes it in place)
        columns = 1 + negatives.shape[0]
        targets = torch.zeros(queries.shape[0], columns, device=queries.device)
        targets[:, 0] = 1.0
        if valid is not None:
            valid = torch.cat([valid.new_ones(1), valid])
        return queue_cross_entropy(positive, queries, temperature, negatives.detach(), targets,
                                   torch.ones(columns, device=queries.device), valid)

    def forward(self, image_embeds: Tensor, text_embeds: Tensor, image_ids: Tensor, temperature: Tensor,
                teacher_image: Tensor, teacher_text: Tensor, queue: Dict[str, Tensor]) -> Tensor:
        """L_MoCo for [n, D] student queries, tau, [n, D] teacher keys and ``FeatureQueue.state()``
        (or ``slots()``: empty slots masked out)."""
        valid, temperature = queue.get('valid'), temperature.detach()
        return (self._one_way(image_embeds, teacher_text, queue['text_feats'], valid, temperature) +
                self._one_way(text_embeds, teacher_image, queue['image_feats'], valid, temperature)) / 2
