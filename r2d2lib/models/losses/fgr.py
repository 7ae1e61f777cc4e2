"""Fine-grained ranking (FGR, Eq. 3): the pair sampler and the loss, one hop from each other."""
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from r2d2lib.models.utils import (
    all_gather_no_grad,
    all_gather_with_grad,
    sample_hard_negatives,
    similarity_fp32,
)
from r2d2lib.registry import LOSSES


@dataclass
class FGRPairs:
    """The pairs both cross encoders score for FGR, given pairs first.

    ``image_source`` [U, 1+N, C_v]: the distinct image token maps; pair p shows
    ``image_source[image_index[p]]`` (``image_tokens``, made only when read), so that
    ``R2D2Model.cross_encode(image_source, ..., image_index=image_index)`` projects each image once.
    ``text_hidden`` [P, L, H] and ``text_mask`` [P, L] of every pair, its ``labels`` [P] (1 matched,
    0 not) and ``valid`` [P] (False: a drawn negative that does not exist because every gathered
    candidate shares the query's image id).
    """

    image_source: Tensor
    image_index: Tensor
    text_hidden: Tensor
    text_mask: Tensor
    labels: Tensor
    valid: Tensor

    @property
    def image_tokens(self) -> Tensor:
        """[P, 1+N, C_v] image tokens of every pair (a copy: ``image_source[image_index]``)."""
        return self.image_source[self.image_index]


class FGRPairSampler:
    """FGR's in-batch hard negatives (Sec. 3.2) and the pairs they form, for pre-training and matching.

    For each query pair i it draws, from the batch of all ranks, one negative image for text i and one
    negative text for image i with probability softmax(sim / t), candidates with the same image id
    excluded (:func:`~r2d2lib.models.utils.sample_hard_negatives`). ``t`` is ``temperature``, or when
    None (the official code) the model's contrastive tau, which falls to about 0.01 so that the draw is
    nearly the hardest negative; a fixed value keeps easier negatives in the draw (on a small corpus with
    recurring captions the hardest ones are mostly false negatives, docs/inference.md).

    The pairs (:meth:`pairs`): the given ones (positives in pre-training, labelled pairs in matching)
    with their labels, then (negative image, text_i) and (image_i, negative text) of every pair that
    draws negatives (all in pre-training: 3n pairs; those labelled 1 in matching), labelled 0.

    Args:
        temperature: fixed temperature of the draw, or None for the model's tau.
    """

    def __init__(self, temperature: Optional[float] = None):
        if temperature is not None and temperature <= 0:
            raise ValueError(f'hard_negative_temperature must be positive, got {temperature}')
        self.temperature = temperature

    @torch.no_grad()
    def draw(self, image_ids: Tensor, image_embeds: Tensor, text_embeds: Tensor,
             tau: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(neg_image, image_ok, neg_text, text_ok)``: gathered indices of the drawn negatives of every
        local pair and whether they exist. Similarities are fp32 (also under autocast)."""
        all_ids = all_gather_no_grad(image_ids)
        temperature = self.temperature or tau.detach()
        neg_image, image_ok = sample_hard_negatives(
            similarity_fp32(text_embeds, all_gather_no_grad(image_embeds)), image_ids, all_ids, temperature)
        neg_text, text_ok = sample_hard_negatives(
            similarity_fp32(image_embeds, all_gather_no_grad(text_embeds)), image_ids, all_ids, temperature)
        return neg_image, image_ok, neg_text, text_ok

    def pairs(self, image_tokens: Tensor, text_hidden: Tensor, text_mask: Tensor, image_ids: Tensor,
              image_embeds: Tensor, text_embeds: Tensor, tau: Tensor,
              labels: Optional[Tensor] = None) -> FGRPairs:
        """The given pairs and their hard negatives (see the class doc).

        ``text_hidden`` is what the cross encoders read (complete or masked text); negatives are drawn
        with the embeddings. ``labels`` None: every given pair is a positive (pre-training); else only
        the pairs labelled 1 draw negatives. Every rank gathers (collectives run even without a local
        positive), with gradient for the tokens and hidden states.
        """
        drawn = self.draw(image_ids, image_embeds, text_embeds, tau)
        all_tokens = all_gather_with_grad(image_tokens)
        all_hidden, all_mask = all_gather_with_grad(text_hidden), all_gather_no_grad(text_mask)
        n = image_ids.shape[0]
        given = image_ids.new_ones(n) if labels is None else labels
        neg_image, image_ok, neg_text, text_ok = drawn
        local = torch.arange(n, device=image_ids.device)
        hidden, mask = text_hidden, text_mask
        if labels is not None:
            positive = labels == 1
            neg_image, image_ok, neg_text, text_ok = (t[positive] for t in drawn)
            local, hidden, mask = local[positive], text_hidden[positive], text_mask[positive]
        if all_tokens is image_tokens:  # one rank: the negatives are local images
            source, negatives = image_tokens, neg_image
        else:  # the local images, then the drawn ones of the gathered batch
            source = torch.cat([image_tokens, all_tokens[neg_image]])
            negatives = n + torch.arange(neg_image.shape[0], device=image_ids.device)
        zeros = given.new_zeros(neg_image.shape[0])
        return FGRPairs(
            image_source=source,
            image_index=torch.cat([torch.arange(n, device=image_ids.device), negatives, local]),
            text_hidden=torch.cat([text_hidden, hidden, all_hidden[neg_text]]),
            text_mask=torch.cat([text_mask, mask, all_mask[neg_text]]),
            labels=torch.cat([given, zeros, zeros]),
            valid=torch.cat([torch.ones_like(given, dtype=torch.bool), image_ok, text_ok]))


@LOSSES.register_module()
class FGRLoss(nn.Module):
    """Fine-grained ranking (Eq. 3): matched / not-matched cross-entropy of both cross encoders.

        L_FGR = 1/2 [ CE_w(g(h_I[CLS]), y) + CE_w(g(h_T[CLS]), y) ]

    As the official fine-tuning code, each positive pair comes with one hard
    negative image and one hard negative text (labels 1 : 2 negatives, drawn by
    :attr:`sampler`, a :class:`FGRPairSampler`) and the cross-entropy has class
    weights ``[1.0, 2.0]`` (index 0 "not matched", index 1 "matched"), i.e.
    ``F.cross_entropy(logits, labels, weight=[1, 2])``: the weighted mean
    ``sum_i w[y_i] ce_i / sum_i w[y_i]``. ``pair_mask`` removes pairs that have no
    valid negative (every sample in the gathered batch shares the query's image id)
    from both sums; with all pairs valid the value equals the official one exactly.

    Args:
        class_weight: weights of "not matched" and "matched".
        hard_negative_temperature: temperature of the negatives' draw (:class:`FGRPairSampler`);
            None: the model's contrastive tau (the official code).
    """

    name = 'fgr'

    def __init__(self, class_weight: Sequence[float] = (1.0, 2.0),
                 hard_negative_temperature: Optional[float] = None):
        super().__init__()
        self.register_buffer('class_weight', torch.tensor(class_weight, dtype=torch.float32),
                             persistent=False)
        self.sampler = FGRPairSampler(hard_negative_temperature)

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
