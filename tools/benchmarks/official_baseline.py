"""The official approach to R2D2's training step, re-implemented for the ``train`` benchmark.

The authors released no pre-training code; their fine-tuning code (ALBEF's structure,
see ../shared/reference/README.md) fixes how a step is computed, and this module
reproduces those choices on top of our model, with the same weights and losses:

* eager attention everywhere: BERT and the CLIP ViT with transformers' ``'eager'``
  implementation, the cross encoders with an explicit ``softmax(q k^T / sqrt(d) + mask) v``
  and additive masks (0 keep, -10000 drop), as BERT's original self-attention;
* hard negatives drawn one query at a time: ``softmax(sim / temp)`` with the same image
  id zeroed, then ``torch.multinomial(weights[b], 1).item()`` per row, and the negatives
  stacked from a Python list (the per-sample loop with a host sync per draw);
* a separate MLM forward: FGR sees the complete texts, and MLM runs the text encoder on
  the masked texts again and the text-image cross encoder on them (ALBEF's
  ``text_encoder(masked ids, mode='text')`` then fusion, predictions at every position);
* the momentum teacher encodes the images itself (ALBEF's ``visual_encoder_m``): with a
  frozen ViT that is a second ViT pass over the same images;
* the feature queue is read as copies of its filled slots.

Everything else (losses, masking, patch dropping, queue and centre updates, the teacher's
EMA) is :class:`~r2d2lib.models.objectives.R2D2Objective`'s, so both methods compute the same
objective and differ only in how.
"""
import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from r2d2lib.models.fusion.cross_encoder import AttentionProjection
from r2d2lib.models.objectives import R2D2Objective, TrainFeatures
from r2d2lib.models.utils import all_gather_no_grad, all_gather_with_grad
from r2d2lib.models.vlp import R2D2Model

MASK_VALUE = -10000.0  # BERT's additive mask


class EagerAttentionProjection(AttentionProjection):
    """Cross-encoder attention as BERT's eager ``BertSelfAttention``: the [N, M] matrix materialised."""

    def forward(self, x: Tensor, context: Tensor, mask: Optional[Tensor]) -> Tensor:
        q, k, v = self._heads(self.query(x)), self._heads(self.key(context)), self._heads(self.value(context))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores + (~mask).to(scores.dtype) * MASK_VALUE
        probs = F.dropout(scores.softmax(dim=-1), p=self.dropout, training=self.training)
        out = probs @ v
        b, h, n, d = out.shape
        return out.transpose(1, 2).reshape(b, n, h * d)


def eager_model_config(model_cfg: dict) -> dict:
    """``model_cfg`` with transformers' eager attention in the HF encoders (timm: see to_official)."""
    cfg = dict(model_cfg)
    for key in ('image_encoder', 'text_encoder'):
        encoder = dict(cfg[key])
        if encoder.get('type') in ('HFBertEncoder', 'HFCLIPVisionEncoder'):
            encoder['attn_implementation'] = 'eager'
        cfg[key] = encoder
    return cfg


def to_official(model: R2D2Model) -> R2D2Model:
    """Turn a built R2D2Model (built from :func:`eager_model_config`) into the official approach."""
    if not isinstance(model, R2D2Model) or not isinstance(model.objective, R2D2Objective):
        raise TypeError(f'the official baseline needs an R2D2Model trained by R2D2Objective, got '
                        f'{type(model).__name__} with {type(model.objective).__name__}')
    for module in model.modules():
        if type(module) is AttentionProjection:
            module.__class__ = EagerAttentionProjection
        if hasattr(module, 'fused_attn'):  # timm attention blocks
            module.fused_attn = False
    model.objective.__class__ = OfficialR2D2Objective
    return model


class OfficialR2D2Objective(R2D2Objective):
    """R2D2Objective computed as the official code does (see the module doc); same objective."""

    def teacher_features(self, images: Tensor, input_ids: Tensor, attention_mask: Tensor,
                         image_tokens: Tensor):
        with torch.no_grad():
            if 'image_encoder' not in self.teacher.teachers:  # frozen ViT: ALBEF's visual_encoder_m
                image_tokens = self._image_encoder(images)  # the teacher runs its own ViT pass
            return super().teacher_features(images, input_ids, attention_mask, image_tokens)

    def train_features(self, model: R2D2Model, inputs: dict) -> TrainFeatures:
        self.__dict__['_image_encoder'] = model.image_encoder  # for teacher_features
        return super().train_features(model, inputs)

    def compute_losses(self, model: R2D2Model, f: TrainFeatures) -> Dict[str, Tensor]:
        tau = model.temperature()
        loss = self.contrastive
        if loss.requires_queue:
            value = loss(f.image_embeds, f.text_embeds, f.image_ids, tau, f.teacher_image, f.teacher_text,
                         self.queue.state())
        else:
            value = loss(f.image_embeds, f.text_embeds, f.image_ids, tau)
        losses = {loss.name: value}
        if self.fgd is not None:
            losses[self.fgd.name] = self.fgd(model, f.images, f.masked_embeds, f.teacher_image,
                                             f.teacher_text)
        text_image, image_text, labels, pair_mask = self.fgr_forward(model, f, f.text_hidden, tau)
        losses[self.fgr.name] = self.fgr(
            model.text_image_itm_head(text_image[:, 0]), model.image_text_itm_head(image_text[:, 0]),
            labels, pair_mask)
        if self.mlm_head is not None:  # a separate MLM forward: text encoder and fusion again
            masked_hidden = model.text_encoder(f.masked_ids, f.text_mask)
            states = model.text_image_encoder(masked_hidden, f.image_tokens, x_mask=f.text_mask)
            losses[self.mlm.name] = self.mlm(self.mlm_head(states), f.mlm_labels)
        return losses

    @staticmethod
    def sample_one_by_one(similarity: Tensor, query_ids: Tensor, candidate_ids: Tensor,
                          temperature: Tensor):
        """The official per-query draw: softmax, same ids zeroed, ``multinomial(...).item()`` per row."""
        weights = F.softmax(similarity.float() / temperature, dim=1)
        weights = weights.masked_fill(query_ids[:, None] == candidate_ids[None, :], 0)
        indices, valid = [], []
        for b in range(weights.shape[0]):
            if float(weights[b].sum()) > 0:
                indices.append(torch.multinomial(weights[b], 1).item())
                valid.append(True)
            else:  # no negative in the batch (the official code would fail here)
                indices.append(0)
                valid.append(False)
        return indices, torch.tensor(valid, device=similarity.device)

    def fgr_forward(self, model: R2D2Model, f: TrainFeatures, text_hidden: Tensor, tau: Tensor):
        image_ids, text_mask, image_tokens = f.image_ids, f.text_mask, f.image_tokens
        n = image_ids.shape[0]
        all_ids = all_gather_no_grad(image_ids)
        with torch.no_grad():
            temp = tau.detach()
            neg_image, image_ok = self.sample_one_by_one(
                f.text_embeds @ all_gather_no_grad(f.image_embeds).t(), image_ids, all_ids, temp)
            neg_text, text_ok = self.sample_one_by_one(
                f.image_embeds @ all_gather_no_grad(f.text_embeds).t(), image_ids, all_ids, temp)
        all_tokens = all_gather_with_grad(image_tokens)
        all_hidden, all_mask = all_gather_with_grad(text_hidden), all_gather_no_grad(text_mask)
        negative_images = torch.stack([all_tokens[i] for i in neg_image])
        negative_texts = torch.stack([all_hidden[i] for i in neg_text])
        negative_masks = torch.stack([all_mask[i] for i in neg_text])
        images = torch.cat([image_tokens, negative_images, image_tokens])
        texts = torch.cat([text_hidden, text_hidden, negative_texts])
        masks = torch.cat([text_mask, text_mask, negative_masks])
        labels = torch.cat([image_ids.new_ones(n), image_ids.new_zeros(2 * n)])
        pair_mask = torch.cat([torch.ones_like(image_ok), image_ok, text_ok])
        text_image, image_text = model.cross_encode(images, texts, masks)
        return text_image, image_text, labels, pair_mask
