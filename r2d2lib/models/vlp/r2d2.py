"""R2D2: pre-ranking (dual encoder) + ranking (two cross encoders) + two-way distillation, Sec. 3."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from r2d2lib.models.utils import (
    all_gather_no_grad,
    all_gather_with_grad,
    sample_hard_negatives,
    similarity_fp32,
)
from r2d2lib.registry import FUSIONS, HEADS, LOSSES, MODELS

from .dual_encoder import DualEncoderModel, TrainFeatures


@MODELS.register_module()
class R2D2Model(DualEncoderModel):
    """R2D2: dual encoder ranked by GCPR, two cross encoders re-ranking with FGR, MLM and TwD.

    The full objective (Eq. 8): L = L_GCPR^TgD + L_FGR + L_FGD + L_MLM, logged as
    ``loss_gcpr``, ``loss_fgr``, ``loss_fgd``, ``loss_mlm``. Each part is optional
    in the config, which is how the paper's ablations (Table 3) are written. One
    training step (mode ``'loss'``):

    1. the dual-encoder part (:class:`DualEncoderModel`): image tokens [n, P+N, C_v],
       text hidden states [n, L, H], L2-normalised embeddings [n, D]; GCPR, or GCPR
       with target-guided distillation against the momentum teacher and the
       weighted queues (``TargetDistillLoss``); feature-guided distillation;
    2. hard negatives: for each local pair, one negative image per text and one
       negative text per image from the batch of all ranks, drawn from
       softmax(sim / tau) with the same image id excluded; 3n pairs (positive, text
       with negative image, image with negative text) go through both cross
       encoders -> ITM heads -> FGR (Eq. 3);
    3. MLM (Sec. 3.2): ``text_mask_ratio`` (15%) of the real text tokens of every
       text become [MASK]; ``mlm_head`` predicts them from the text-image cross
       encoder's outputs for the positive pairs. With ``enhanced_training`` (ET) the
       masked texts ride the FGR pass: every text the cross encoders see in step 2
       is the masked copy (positives, the negative-image pairs that share the
       text, and the negative texts), so the presence of [MASK] says nothing about
       the label, and the MLM head reads the positive rows of that same pass.
       Without ET (the "w/o ET" ablation) FGR sees the complete texts and MLM runs
       its own text-image cross-encoder pass over the n masked positives. Hard
       negatives are always drawn with the embeddings of the complete texts, and
       the masked text's encoding also serves as FgD's text student.

    Args:
        image_encoder: ENCODERS config returning [B, 1+N, C_v] tokens.
        text_encoder: ENCODERS config returning [B, L, H] hidden states.
        text_image_encoder: FUSIONS config; queries text, keys/values image tokens
            (its ``kv_width`` must be the image width).
        image_text_encoder: FUSIONS config; queries projected image tokens,
            keys/values text hidden states.
        embed_dim: width of the retrieval embeddings (768).
        projection_head: HEADS config of ``vision_proj``, ``text_proj`` and
            ``image_fusion_proj`` (their widths are filled in from the encoders).
        itm_head: HEADS config of both matching heads (input width filled in).
        contrastive_loss: LOSSES config: ``GCPRLoss`` or ``TargetDistillLoss`` (TgD).
        fgr_loss: LOSSES config of FGR.
        mlm_head: HEADS config of the MLM head (width and vocabulary filled in), or
            None for no MLM.
        mlm_loss: LOSSES config of MLM.
        enhanced_training: run MLM inside the FGR pass (ET) or as its own pass.
        hard_negative_temperature: the temperature of the hard-negative draw. ``None``
            (default, the official code) uses the learned contrastive tau, which falls to
            about 0.01, so the draw is nearly the hardest negative. A fixed value (e.g.
            0.1) keeps easier negatives in the draw; on a small corpus trained from scratch
            FGR otherwise stays at chance (docs/inference.md, "Entity attention").
        **dual_encoder_kwargs: ``teacher``, ``queue``, ``fgd_loss``,
            ``feature_centre``, ``text_mask_ratio``, ``patch_drop_ratio``,
            ``loss_weights`` (names ``gcpr``, ``fgr``, ``fgd``, ``mlm``),
            ``data_preprocessor``, ``init_cfg``: see :class:`DualEncoderModel`.
    """

    loss_attributes = DualEncoderModel.loss_attributes + ('fgr_loss', 'mlm_loss')

    def __init__(self, image_encoder: dict, text_encoder: dict, text_image_encoder: dict,
                 image_text_encoder: dict, embed_dim: int = 768,
                 projection_head: dict = dict(type='ProjectionHead'),
                 itm_head: dict = dict(type='ITMHead'),
                 contrastive_loss: dict = dict(type='GCPRLoss'),
                 fgr_loss: dict = dict(type='FGRLoss'),
                 mlm_head: Optional[dict] = None, mlm_loss: dict = dict(type='MLMLoss'),
                 enhanced_training: bool = True, hard_negative_temperature: Optional[float] = None,
                 loss_weights: Optional[Dict[str, float]] = None, **dual_encoder_kwargs):
        super().__init__(image_encoder, text_encoder, embed_dim=embed_dim,
                         projection_head=projection_head, contrastive_loss=contrastive_loss,
                         **dual_encoder_kwargs)
        self.text_image_encoder = FUSIONS.build(text_image_encoder)
        self.image_text_encoder = FUSIONS.build(image_text_encoder)
        image_width, text_width = self.image_encoder.width, self.text_encoder.width
        self._check_config(image_width, text_width)
        self.image_fusion_proj = HEADS.build(dict(projection_head, in_features=image_width,
                                                  out_features=self.image_text_encoder.width))
        self.text_image_itm_head = HEADS.build(dict(itm_head, in_features=self.text_image_encoder.width))
        self.image_text_itm_head = HEADS.build(dict(itm_head, in_features=self.image_text_encoder.width))
        self.fgr_loss = LOSSES.build(fgr_loss)
        self.mlm_head = self.mlm_loss = None
        if mlm_head is not None:
            self.mlm_head = HEADS.build(dict(mlm_head, in_features=self.text_image_encoder.width,
                                             vocab_size=self.text_encoder.vocab_size))
            self.mlm_loss = LOSSES.build(mlm_loss)
        self.enhanced_training = enhanced_training
        if hard_negative_temperature is not None and hard_negative_temperature <= 0:
            raise ValueError(f'hard_negative_temperature must be positive, got {hard_negative_temperature}')
        self.hard_negative_temperature = hard_negative_temperature
        self.loss_weights = self._resolve_loss_weights(loss_weights)

    def _check_config(self, image_width: int, text_width: int) -> None:
        """Fail at build time, naming the key, when the cross encoders don't fit the towers."""
        expected = {
            'text_image_encoder.width': (self.text_image_encoder.width, text_width),
            'text_image_encoder.kv_width': (self.text_image_encoder.kv_width, image_width),
            'image_text_encoder.kv_width': (self.image_text_encoder.kv_width, text_width),
        }
        for key, (got, want) in expected.items():
            if got != want:
                raise ValueError(f'{key} is {got} but must be {want} to match the encoders')

    # ----------------------------------------------------------------- matching API
    def cross_encode(self, image_tokens: Tensor, text_hidden: Tensor,
                     text_mask: Tensor) -> Tuple[Tensor, Tensor]:
        """Outputs of the text-image [P, L, H] and the image-text [P, 1+N, H] cross encoder for P pairs."""
        text_image = self.text_image_encoder(text_hidden, image_tokens, x_mask=text_mask)
        image_text = self.image_text_encoder(self.image_fusion_proj(image_tokens), text_hidden,
                                             context_mask=text_mask)
        return text_image, image_text

    def itm_logits(self, image_tokens: Tensor, text_hidden: Tensor,
                   text_mask: Tensor) -> Tuple[Tensor, Tensor]:
        """ITM logits [P, 2] of the text-image and the image-text cross encoder for P pairs."""
        text_image, image_text = self.cross_encode(image_tokens, text_hidden, text_mask)
        return self.text_image_itm_head(text_image[:, 0]), self.image_text_itm_head(image_text[:, 0])

    def match_features(self, image_tokens: Tensor, text_hidden: Tensor, text_mask: Tensor) -> Tensor:
        """[P] matching probability of pair i: mean of both cross encoders' P(matched)."""
        text_image, image_text = self.itm_logits(image_tokens, text_hidden, text_mask)
        return (text_image.float().softmax(-1)[:, 1] + image_text.float().softmax(-1)[:, 1]) / 2

    def match(self, pixel_values: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """[B] probability that the i-th image matches the i-th text (mean of the two ITM heads)."""
        image_tokens = self.image_encoder(pixel_values)
        text_hidden = self.text_encoder(input_ids, attention_mask)
        return self.match_features(image_tokens, text_hidden, attention_mask)

    # ----------------------------------------------------------------- training step
    @property
    def needs_masked_text(self) -> bool:
        return super().needs_masked_text or self.mlm_head is not None

    def compute_losses(self, f: TrainFeatures) -> Dict[str, Tensor]:
        """The dual-encoder losses, then FGR (Eq. 3) and MLM (Sec. 3.2)."""
        losses = super().compute_losses(f)
        enhanced = self.mlm_head is not None and self.enhanced_training
        fgr_hidden = f.masked_hidden if enhanced else f.text_hidden
        text_image, image_text, labels, pair_mask = self.fgr_forward(f, fgr_hidden)
        losses[self.fgr_loss.name] = self.fgr_loss(
            self.text_image_itm_head(text_image[:, 0]), self.image_text_itm_head(image_text[:, 0]),
            labels, pair_mask)
        if self.mlm_head is not None:
            n = f.image_ids.shape[0]
            if enhanced:  # the positive rows of the FGR pass
                mlm_states = text_image[:n]
            else:
                mlm_states = self.text_image_encoder(f.masked_hidden, f.image_tokens, x_mask=f.text_mask)
            # Every position is predicted and the unmasked ones ignored by their label: selecting
            # the masked rows first would read their (random) count on the host in every step.
            losses[self.mlm_loss.name] = self.mlm_loss(self.mlm_head(mlm_states), f.mlm_labels)
        return losses

    def fgr_forward(self, f: TrainFeatures, text_hidden: Tensor):
        """Both cross encoders over positives + hard negatives (``text_hidden``: complete or masked).

        Returns the text-image and image-text outputs of the 3n pairs (positives
        first), their labels and the valid-pair mask.
        """
        image_ids, text_mask, image_tokens = f.image_ids, f.text_mask, f.image_tokens
        n = image_ids.shape[0]
        neg_image, image_ok, neg_text, text_ok = self.draw_hard_negatives(image_ids, f.image_embeds,
                                                                          f.text_embeds)
        all_tokens = all_gather_with_grad(image_tokens)
        all_hidden, all_mask = all_gather_with_grad(text_hidden), all_gather_no_grad(text_mask)
        # pairs: (image_i, text_i) | (negative image of text_i, text_i) | (image_i, negative text of image_i)
        images = torch.cat([image_tokens, all_tokens[neg_image], image_tokens])
        texts = torch.cat([text_hidden, text_hidden, all_hidden[neg_text]])
        masks = torch.cat([text_mask, text_mask, all_mask[neg_text]])
        labels = torch.cat([image_ids.new_ones(n), image_ids.new_zeros(2 * n)])
        pair_mask = torch.cat([torch.ones_like(image_ok), image_ok, text_ok])
        text_image, image_text = self.cross_encode(images, texts, masks)
        return text_image, image_text, labels, pair_mask

    @torch.no_grad()
    def draw_hard_negatives(self, image_ids: Tensor, image_embeds: Tensor,
                            text_embeds: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """FGR's in-batch hard negatives (Sec. 3.2) of every local pair, from the batch of all ranks.

        Returns ``(neg_image, image_ok, neg_text, text_ok)``: for text i the gathered index of a
        negative image drawn from softmax(sim / tau) with its own image id excluded, and for
        image i likewise a negative text; ``*_ok`` is False where no candidate has another id.
        Similarities are fp32 (also under autocast).
        """
        all_ids = all_gather_no_grad(image_ids)
        temp = self.hard_negative_temperature or self.contrastive_loss.temperature.detach()
        neg_image, image_ok = sample_hard_negatives(
            similarity_fp32(text_embeds, all_gather_no_grad(image_embeds)), image_ids, all_ids, temp)
        neg_text, text_ok = sample_hard_negatives(
            similarity_fp32(image_embeds, all_gather_no_grad(text_embeds)), image_ids, all_ids, temp)
        return neg_image, image_ok, neg_text, text_ok
