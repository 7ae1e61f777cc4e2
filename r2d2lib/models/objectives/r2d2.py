"""R2D2's pre-training objective, Eq. 8: L = L_GCPR^TgD + L_FGR + L_FGD + L_MLM (Sec. 3)."""
from __future__ import annotations

from typing import Dict, List, Optional

from torch import Tensor, nn

from r2d2lib.registry import HEADS, LOSSES, OBJECTIVES

from .contrastive import ContrastiveObjective, TrainFeatures


@OBJECTIVES.register_module()
class R2D2Objective(ContrastiveObjective):
    """R2D2's objective: GCPR (with TgD), FGR re-ranking, MLM with enhanced training, FgD (Eq. 8).

    Logged as ``loss_gcpr``, ``loss_fgr``, ``loss_fgd``, ``loss_mlm``. Each part is optional in the
    config, which is how the paper's ablations (Table 3) are written. One step:

    1. the dual-encoder part (:class:`ContrastiveObjective`): embeddings, GCPR or GCPR with
       target-guided distillation against the momentum teacher and the weighted queues,
       feature-guided distillation;
    2. FGR (Eq. 3): ``fgr.sampler`` (:class:`~r2d2lib.models.losses.FGRPairSampler`) draws one
       negative image per text and one negative text per image from the batch of all ranks and
       assembles the 3n pairs; both cross encoders and their ITM heads score them;
    3. MLM (Sec. 3.2): ``text_mask_ratio`` (15%) of the real text tokens of every text become
       [MASK]; ``mlm_head`` predicts them from the text-image cross encoder's outputs for the
       positive pairs. With ``enhanced_training`` (ET) the masked texts ride the FGR pass: every
       text the cross encoders see in step 2 is the masked copy (positives, the negative-image pairs
       that share the text, and the negative texts), so the presence of [MASK] says nothing about
       the label, and the MLM head reads the positive rows of that same pass. Without ET (the
       "w/o ET" ablation) FGR sees the complete texts and MLM runs its own text-image
       cross-encoder pass over the n masked positives. Hard negatives are always drawn with the
       embeddings of the complete texts, and the masked text's encoding also serves as FgD's text
       student.

    The MLM head is a training part (inference never predicts tokens), so it lives here.

    Args:
        model: an :class:`~r2d2lib.models.R2D2Model` (filled in; read at build time, not kept).
        fgr: LOSSES config of :class:`~r2d2lib.models.losses.FGRLoss` (its
            ``hard_negative_temperature`` configures the draw).
        mlm_head: HEADS config of the MLM head (width and vocabulary filled in), or None for no MLM.
        mlm: LOSSES config of MLM.
        enhanced_training: run MLM inside the FGR pass (ET) or as its own pass.
        **contrastive_kwargs: ``contrastive``, ``teacher``, ``queue``, ``fgd``, ``text_mask_ratio``,
            ``weights`` (names ``gcpr``, ``fgr``, ``fgd``, ``mlm``): see :class:`ContrastiveObjective`.
    """

    def __init__(self, model: nn.Module, fgr: dict = dict(type='FGRLoss'), mlm_head: Optional[dict] = None,
                 mlm: dict = dict(type='MLMLoss'), enhanced_training: bool = True,
                 weights: Optional[Dict[str, float]] = None, **contrastive_kwargs):
        if not hasattr(model, 'cross_encode'):
            raise TypeError(f'R2D2Objective trains cross encoders, which {type(model).__name__} does not '
                            'have (use ContrastiveObjective for a dual encoder)')
        super().__init__(model, **contrastive_kwargs)
        self.fgr = LOSSES.build(fgr)
        self.mlm_head = self.mlm = None
        if mlm_head is not None:
            self.mlm_head = HEADS.build(dict(mlm_head, in_features=model.text_image_encoder.width,
                                             vocab_size=model.text_encoder.vocab_size))
            self.mlm = LOSSES.build(mlm)
        self.enhanced_training = enhanced_training
        self.weights = self._resolve_weights(weights)

    def loss_names(self) -> List[str]:
        names = super().loss_names()
        if getattr(self, 'fgr', None) is None:  # ContrastiveObjective.__init__ resolving its own part
            return names
        return names + [self.fgr.name] + ([self.mlm.name] if self.mlm is not None else [])

    @property
    def needs_masked_text(self) -> bool:
        return super().needs_masked_text or self.mlm_head is not None

    def compute_losses(self, model: nn.Module, f: TrainFeatures) -> Dict[str, Tensor]:
        """The dual-encoder losses, then FGR (Eq. 3) and MLM (Sec. 3.2)."""
        losses = super().compute_losses(model, f)
        enhanced = self.mlm_head is not None and self.enhanced_training
        text_hidden = f.masked_hidden if enhanced else f.text_hidden
        pairs = self.fgr.sampler.pairs(f.image_tokens, text_hidden, f.text_mask, f.image_ids, f.image_embeds,
                                       f.text_embeds, model.temperature.tau)
        text_image, image_text = model.cross_encode(pairs.image_source, pairs.text_hidden, pairs.text_mask,
                                                    image_index=pairs.image_index)
        losses[self.fgr.name] = self.fgr(model.text_image_itm_head(text_image[:, 0]),
                                         model.image_text_itm_head(image_text[:, 0]), pairs.labels,
                                         pairs.valid)
        if self.mlm_head is not None:
            n = f.image_ids.shape[0]
            if enhanced:  # the positive rows of the FGR pass
                mlm_states = text_image[:n]
            else:
                mlm_states = model.text_image_encoder(f.masked_hidden, model.fusion_tokens(f.image_tokens),
                                                      x_mask=f.text_mask)
            # Every position is predicted and the unmasked ones ignored by their label: selecting
            # the masked rows first would read their (random) count on the host in every step.
            losses[self.mlm.name] = self.mlm(self.mlm_head(mlm_states), f.mlm_labels)
        return losses
