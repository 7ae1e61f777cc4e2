"""Fine-tuning R2D2 for image-text matching (ICM, IQM): FGR alone on labelled pairs (Appendix C)."""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor, nn

from r2d2lib.registry import LOSSES, OBJECTIVES


@OBJECTIVES.register_module()
class MatchingObjective(nn.Module):
    """R2D2 trained by fine-grained ranking alone on labelled image-text pairs (ICM, IQM).

    Appendix C: "During fine-tuning, we only apply the FGR loss (Equation 3)". The matching sets give
    pairs with a label (1 matched, 0 not matched), so one step scores, with both cross encoders and
    their ITM heads:

    1. every given pair ``(image_i, text_i)`` with its own label ``y_i``;
    2. with ``hard_negatives`` (default), for every pair labelled 1, the two in-batch hard negatives
       of pre-training FGR (the same :class:`~r2d2lib.models.losses.FGRPairSampler`): a negative
       image for ``text_i`` and a negative text for ``image_i``, both labelled 0. Pairs labelled 0
       get no drawn negatives (their text does not describe their image, so "a harder negative for
       it" has no meaning).

    L_FGR (Eq. 3) is then :class:`~r2d2lib.models.losses.FGRLoss` over all those pairs. The dual
    encoder only serves to draw the negatives here (no GCPR): the projections and the temperature
    receive no gradient, so this objective freezes them (``requires_grad=False``), which keeps DDP
    free of unused parameters. The text encoder is trained through the cross encoders; the image
    encoder is frozen as configured. Inputs come from ``MatchingDataPreprocessor`` (``labels`` [B]
    besides the usual keys). The model is a plain :class:`~r2d2lib.models.R2D2Model`: a pre-trained
    R2D2 loads into it strictly, and the fine-tuned one exports as R2D2.

    Args:
        model: an R2D2Model (filled in; read at build time, not kept).
        fgr: LOSSES config of :class:`~r2d2lib.models.losses.FGRLoss`.
        hard_negatives: add the in-batch hard negatives of every positive pair.
        weights: ``dict(fgr=...)``.
    """

    def __init__(self, model: nn.Module, fgr: dict = dict(type='FGRLoss'), hard_negatives: bool = True,
                 weights: Optional[Dict[str, float]] = None):
        super().__init__()
        if not hasattr(model, 'cross_encode'):
            raise TypeError(f'MatchingObjective trains cross encoders, which {type(model).__name__} does not '
                            'have')
        self.fgr = LOSSES.build(fgr)
        self.hard_negatives = hard_negatives
        self.teacher = None
        unknown = set(weights or {}) - {self.fgr.name}
        if unknown:
            raise KeyError(f'objective.weights has unknown keys {sorted(unknown)}; this objective computes '
                           f"['{self.fgr.name}']")
        self.weights = {self.fgr.name: float((weights or {}).get(self.fgr.name, 1.0))}
        for module in (model.vision_proj, model.text_proj, model.temperature):
            module.requires_grad_(False)

    def sync_teacher(self, model: nn.Module) -> None:
        """No teacher: nothing to do."""

    def forward(self, model: nn.Module, inputs: dict) -> Dict[str, Tensor]:
        """``loss_fgr`` (weighted by ``weights['fgr']``) of the labelled pairs and their negatives."""
        if 'labels' not in inputs:
            raise KeyError('MatchingObjective needs `labels` in its inputs: use '
                           "data_preprocessor=dict(type='MatchingDataPreprocessor')")
        labels, image_ids, text_mask = inputs['labels'], inputs['image_ids'], inputs['attention_mask']
        image_tokens, image_embeds = model.image_features(inputs['images'])
        text_hidden, text_embeds = model.text_features(inputs['input_ids'], text_mask)
        if self.hard_negatives:
            pairs = self.fgr.sampler.pairs(image_tokens, text_hidden, text_mask, image_ids, image_embeds,
                                           text_embeds, model.temperature.tau, labels=labels)
            tokens, index = pairs.image_source, pairs.image_index
            hidden, mask = pairs.text_hidden, pairs.text_mask
            pair_labels, valid = pairs.labels, pairs.valid
        else:
            tokens, index, hidden, mask, pair_labels = image_tokens, None, text_hidden, text_mask, labels
            valid = torch.ones_like(labels, dtype=torch.bool)
        text_image, image_text = model.cross_encode(tokens, hidden, mask, image_index=index)
        value = self.fgr(model.text_image_itm_head(text_image[:, 0]),
                         model.image_text_itm_head(image_text[:, 0]), pair_labels, valid)
        return {f'loss_{self.fgr.name}': self.weights[self.fgr.name] * value}


