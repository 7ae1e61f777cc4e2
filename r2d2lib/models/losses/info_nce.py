"""Contrastive losses of the dual encoders R2D2 is compared with: CLIP and BriVL (WenLan)."""
import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from mmengine.dist import get_rank
from torch import Tensor, nn

from r2d2lib.models.utils import all_gather_with_grad, similarity_fp32
from r2d2lib.registry import LOSSES


@LOSSES.register_module()
class InfoNCELoss(nn.Module):
    """CLIP's symmetric InfoNCE: one-hot targets, learnable logit scale (Radford et al., 2021).

        L = 1/2 [ CE(scale * I T^T, diag) + CE(scale * T I^T, diag) ]

    Each rank scores its n images against the texts of all ranks (gathered with
    gradient) and vice versa; the target of pair i is its own partner only, even
    when another caption of the same image is in the batch (unlike GCPR's id
    targets). The scale is learnt as ``log(1 / tau)`` and clamped to at most
    ``max_scale`` (100), as CLIP.

    Args:
        temperature: initial tau (0.07), i.e. scale 1 / 0.07.
        max_scale: upper clamp of the scale.
        gather: contrast with the batch of all ranks (CLIP) or the local batch only.
    """

    name = 'info_nce'
    requires_queue = False

    def __init__(self, temperature: float = 0.07, max_scale: float = 100.0, gather: bool = True):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))
        self.max_log_scale = math.log(max_scale)
        self.gather = gather

    @property
    def temperature(self) -> Tensor:
        """tau = 1 / scale."""
        return torch.exp(-self.logit_scale)

    def forward(self, image_embeds: Tensor, text_embeds: Tensor, image_ids: Tensor) -> Tensor:
        """L_InfoNCE for L2-normalised [n, D] embeddings (``image_ids`` unused: one-hot targets)."""
        with torch.no_grad():
            self.logit_scale.clamp_(max=self.max_log_scale)
        scale = self.logit_scale.exp()
        if self.gather:
            all_images, all_texts = all_gather_with_grad(image_embeds), all_gather_with_grad(text_embeds)
        else:
            all_images, all_texts = image_embeds, text_embeds
        n = image_embeds.shape[0]
        offset = get_rank() * n if self.gather else 0
        labels = torch.arange(offset, offset + n, device=image_embeds.device)
        return (F.cross_entropy(scale * similarity_fp32(image_embeds, all_texts), labels) +
                F.cross_entropy(scale * similarity_fp32(text_embeds, all_images), labels)) / 2


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
    abstract gives no hyper-parameters; the defaults are MoCo's.

    Args:
        temperature: fixed tau (0.07).
    """

    name = 'moco'
    requires_queue = True

    def __init__(self, temperature: float = 0.07):
        super().__init__()
        self.register_buffer('temp', torch.tensor(float(temperature)), persistent=False)

    @property
    def temperature(self) -> Tensor:
        return self.temp

    def _one_way(self, queries: Tensor, keys: Tensor, negatives: Tensor,
                 valid: Optional[Tensor]) -> Tensor:
        """fp32 logits [n, 1 + K]: the positive key first, then the queued negatives (``valid`` ones)."""
        queries, keys = queries.float(), keys.detach().float()
        positive = (queries * keys).sum(dim=1, keepdim=True) / self.temp
        # a copy: the queue is written in place after the loss, before the backward pass
        negative = similarity_fp32(queries, negatives.detach().clone(), self.temp)
        if valid is not None:
            negative = negative.masked_fill(~valid, float('-inf'))
        logits = torch.cat([positive, negative], dim=1)
        return F.cross_entropy(logits, torch.zeros_like(positive[:, 0], dtype=torch.long))

    def forward(self, image_embeds: Tensor, text_embeds: Tensor, image_ids: Tensor,
                teacher_image: Tensor, teacher_text: Tensor, queue: Dict[str, Tensor]) -> Tensor:
        """L_MoCo for [n, D] student queries, [n, D] teacher keys and ``FeatureQueue.state()``
        (or ``slots()``: empty slots masked out)."""
        valid = queue.get('valid')
        return (self._one_way(image_embeds, teacher_text, queue['text_feats'], valid) +
                self._one_way(text_embeds, teacher_image, queue['image_feats'], valid)) / 2
