"""R2D2: pre-ranking (dual encoder) + ranking (two cross encoders), Sec. 3; trained by R2D2Objective."""
from __future__ import annotations

from typing import Optional, Tuple

from torch import Tensor

from r2d2lib.registry import FUSIONS, HEADS, MODELS

from .dual_encoder import DualEncoderModel


@MODELS.register_module()
class R2D2Model(DualEncoderModel):
    """R2D2's architecture: a dual encoder that pre-ranks and two cross encoders that re-rank (Sec. 3).

    Inference: embeddings shortlist (:meth:`encode_image`, :meth:`encode_text`), and the text-image
    and image-text cross encoders with their ITM heads give the probability that a pair matches
    (:meth:`match`, :meth:`match_features`), averaged over both. Training is the ``objective``'s:
    ``R2D2Objective`` for pre-training (Eq. 8: GCPR with TgD, FGR, MLM with ET, FgD; the ablations of
    Table 3 switch its parts off) and ``MatchingObjective`` for matching fine-tuning (FGR alone).

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
        fusion_positions: HEADS config of a module applied to the image tokens before both cross
            encoders (in and out width: the image width), e.g. ``PositionalTokenProjection``, which adds
            a fixed 2-D position encoding of each patch; ``None`` (the paper's, and the default): the
            image encoder's tokens as they are. Not in the official release.
        **dual_encoder_kwargs: ``temperature``, ``objective``, ``data_preprocessor``, ``init_cfg``:
            see :class:`DualEncoderModel`.
    """

    def __init__(self, image_encoder: dict, text_encoder: dict, text_image_encoder: dict,
                 image_text_encoder: dict, embed_dim: int = 768,
                 projection_head: dict = dict(type='ProjectionHead'),
                 itm_head: dict = dict(type='ITMHead'), fusion_positions: Optional[dict] = None,
                 **dual_encoder_kwargs):
        self._fusion_cfg = dict(text_image_encoder=text_image_encoder, image_text_encoder=image_text_encoder,
                                projection_head=projection_head, itm_head=itm_head,
                                fusion_positions=fusion_positions)
        super().__init__(image_encoder, text_encoder, embed_dim=embed_dim,
                         projection_head=projection_head, **dual_encoder_kwargs)

    def build_architecture(self) -> None:
        """The cross encoders, the image tokens' projection to their width, and both ITM heads."""
        cfg = self.__dict__.pop('_fusion_cfg')
        self.text_image_encoder = FUSIONS.build(cfg['text_image_encoder'])
        self.image_text_encoder = FUSIONS.build(cfg['image_text_encoder'])
        image_width, text_width = self.image_encoder.width, self.text_encoder.width
        self._check_config(image_width, text_width)
        self.image_fusion_proj = HEADS.build(dict(cfg['projection_head'], in_features=image_width,
                                                  out_features=self.image_text_encoder.width))
        itm_head = cfg['itm_head']
        self.text_image_itm_head = HEADS.build(dict(itm_head, in_features=self.text_image_encoder.width))
        self.image_text_itm_head = HEADS.build(dict(itm_head, in_features=self.image_text_encoder.width))
        positions = cfg['fusion_positions']
        self.fusion_positions = None if positions is None else HEADS.build(
            dict(positions, in_features=image_width, out_features=image_width))

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
    def fusion_tokens(self, image_tokens: Tensor) -> Tensor:
        """The image tokens both cross encoders read: ``fusion_positions(image_tokens)``, or the tokens."""
        return image_tokens if self.fusion_positions is None else self.fusion_positions(image_tokens)

    def cross_encode(self, image_tokens: Tensor, text_hidden: Tensor, text_mask: Tensor,
                     image_index: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Outputs of the text-image [P, L, H] and the image-text [P, 1+N, H] cross encoder for P pairs.

        ``image_index`` [P]: ``image_tokens`` holds the distinct images only and pair p shows
        ``image_tokens[image_index[p]]``; the image-side projections (the text-image encoder's keys
        and values in every layer, ``image_fusion_proj``) then run once per distinct image.
        """
        image_tokens = self.fusion_tokens(image_tokens)
        text_image = self.text_image_encoder(text_hidden, image_tokens, x_mask=text_mask,
                                             context_index=image_index)
        fused = self.image_fusion_proj(image_tokens)
        if image_index is not None:
            fused = fused[image_index]
        image_text = self.image_text_encoder(fused, text_hidden, context_mask=text_mask)
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
        """[B] probability that the i-th image matches the i-th text (mean of the two ITM heads).

        Runs both towers. Who also needs the embeddings should not encode twice: ``image_features``
        and ``text_features`` return the tokens / hidden states with the embeddings, and
        :meth:`match_features` matches from those (what the retrieval loops and ``R2D2Inferencer``
        do).
        """
        image_tokens = self.image_encoder(pixel_values)
        text_hidden = self.text_encoder(input_ids, attention_mask)
        return self.match_features(image_tokens, text_hidden, attention_mask)
