"""R2D2 fine-tuned for image-text matching (ICM, IQM): FGR on labelled pairs (Appendix C)."""
from __future__ import annotations

from typing import Dict, List

import torch
from torch import Tensor

from r2d2lib.models.utils import all_gather_no_grad, all_gather_with_grad
from r2d2lib.registry import MODELS

from .r2d2 import R2D2Model


@MODELS.register_module()
class R2D2MatchingModel(R2D2Model):
    """R2D2 trained by fine-grained ranking alone on labelled image-text pairs (ICM, IQM).

    Appendix C: "During fine-tuning, we only apply the FGR loss (Equation 3)". The
    matching sets give pairs with a label (1 matched, 0 not matched), so one step
    scores, with both cross encoders and their ITM heads:

    1. every given pair ``(image_i, text_i)`` with its own label ``y_i``;
    2. with ``hard_negatives`` (default), for every pair labelled 1, the two
       in-batch hard negatives of pre-training FGR (Sec. 3.2): a negative image
       for ``text_i`` and a negative text for ``image_i``, drawn from
       softmax(sim / tau) over the gathered batch of all ranks with the same image
       id excluded (:func:`~r2d2lib.models.utils.sample_hard_negatives`), both
       labelled 0. Pairs labelled 0 get no drawn negatives (their text does not
       describe their image, so "a harder negative for it" has no meaning).

    L_FGR (Eq. 3) is then :class:`~r2d2lib.models.losses.FGRLoss` over all those
    pairs: the mean of the two cross encoders' class-weighted cross-entropies
    (weights ``[1, 2]`` for not matched / matched, as in pre-training). A positive
    whose every gathered candidate shares its image id gets no negative; that pair
    is masked out of both sums. The drawn negatives keep the ranking signal of
    pre-training and double the negatives seen per step; ``hard_negatives=False``
    trains on the labelled pairs only.

    The dual encoder only serves to draw the negatives here (no GCPR): its
    projections and the temperature ``contrastive_loss.temp`` receive no gradient,
    so they are frozen (``requires_grad=False``), which keeps DDP free of unused
    parameters. The text encoder is trained through the cross encoders; the image
    encoder is frozen as configured. There is no momentum teacher, queue, FgD or
    MLM (a config that sets them is refused).

    Inputs of mode ``'loss'`` come from :class:`MatchingDataPreprocessor`
    (``labels`` [B] besides the usual keys). Everything else (``match``,
    ``match_features``, retrieval ``predict``, ``from_pretrained``) is
    :class:`R2D2Model`'s: the state dict is exactly R2D2's without MLM head, so a
    pre-trained R2D2 in inference form loads into it strictly.

    Args:
        hard_negatives: add the in-batch hard negatives of every positive pair.
        **r2d2_kwargs: see :class:`R2D2Model` (``contrastive_loss`` must be a plain
            ``GCPRLoss``, which holds the temperature used for sampling;
            ``data_preprocessor`` defaults to ``MatchingDataPreprocessor``).
    """

    loss_attributes = ('fgr_loss', )

    def __init__(self, *args, hard_negatives: bool = True, **r2d2_kwargs):
        if r2d2_kwargs.get('data_preprocessor') is None:
            r2d2_kwargs['data_preprocessor'] = dict(type='MatchingDataPreprocessor')
        super().__init__(*args, **r2d2_kwargs)
        self.hard_negatives = hard_negatives
        for key in ('teacher', 'queue', 'fgd_loss', 'mlm_head'):
            if getattr(self, key) is not None:
                raise ValueError(f'R2D2MatchingModel trains FGR only (Appendix C): set `{key}=None` in the '
                                 'model config')
        if getattr(self.contrastive_loss, 'requires_queue', False):
            name = type(self.contrastive_loss).__name__
            raise ValueError('R2D2MatchingModel: contrastive_loss must be a GCPRLoss (it only holds the '
                             f'temperature for hard-negative sampling), got {name}')
        for module in (self.vision_proj, self.text_proj, self.contrastive_loss):
            module.requires_grad_(False)

    def loss(self, inputs: dict) -> Dict[str, Tensor]:
        """``loss_fgr`` (weighted by ``loss_weights['fgr']``) of the labelled pairs and their negatives."""
        if 'labels' not in inputs:
            raise KeyError('R2D2MatchingModel needs `labels` in its inputs: use '
                           "data_preprocessor=dict(type='MatchingDataPreprocessor')")
        labels, image_ids, text_mask = inputs['labels'], inputs['image_ids'], inputs['attention_mask']
        image_tokens, image_embeds = self.image_features(inputs['images'])
        text_hidden, text_embeds = self.text_features(inputs['input_ids'], text_mask)
        images: List[Tensor] = [image_tokens]
        texts: List[Tensor] = [text_hidden]
        masks: List[Tensor] = [text_mask]
        pair_labels: List[Tensor] = [labels]
        valid: List[Tensor] = [torch.ones_like(labels, dtype=torch.bool)]
        if self.hard_negatives:
            negatives = self.positive_hard_negatives(labels, image_ids, image_tokens, image_embeds,
                                                     text_hidden, text_embeds, text_mask)
            for part, extra in zip((images, texts, masks, pair_labels, valid), negatives):
                part.extend(extra)
        text_image, image_text = self.cross_encode(torch.cat(images), torch.cat(texts), torch.cat(masks))
        value = self.fgr_loss(self.text_image_itm_head(text_image[:, 0]),
                              self.image_text_itm_head(image_text[:, 0]),
                              torch.cat(pair_labels), torch.cat(valid))
        return {f'loss_{self.fgr_loss.name}': self.loss_weights[self.fgr_loss.name] * value}

    def positive_hard_negatives(self, labels: Tensor, image_ids: Tensor, image_tokens: Tensor,
                                image_embeds: Tensor, text_hidden: Tensor, text_embeds: Tensor,
                                text_mask: Tensor):
        """The pre-training FGR negatives of the pairs labelled 1, as lists of pair parts.

        Returns ``(images, texts, masks, labels, valid)``, each a list of two tensors:
        (negative image, text_p) for every positive p, then (image_p, negative text).
        Every rank gathers (collectives run even without a local positive).
        """
        positive = labels == 1
        drawn = self.draw_hard_negatives(image_ids, image_embeds, text_embeds)  # every pair; positives kept
        all_tokens = all_gather_with_grad(image_tokens)
        all_hidden, all_mask = all_gather_with_grad(text_hidden), all_gather_no_grad(text_mask)
        neg_image, image_ok, neg_text, text_ok = (t[positive] for t in drawn)
        zeros = labels.new_zeros(neg_image.shape[0])
        return ([all_tokens[neg_image], image_tokens[positive]],
                [text_hidden[positive], all_hidden[neg_text]],
                [text_mask[positive], all_mask[neg_text]],
                [zeros, zeros],
                [image_ok, text_ok])
