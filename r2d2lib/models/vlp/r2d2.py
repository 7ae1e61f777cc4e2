"""R2D2: pre-ranking (dual encoder) + ranking (two cross encoders), Sec. 3."""
from __future__ import annotations

from typing import Dict, List, Optional, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from PIL import Image
from torch import Tensor

from r2d2lib.models.utils import all_gather_no_grad, all_gather_with_grad, sample_hard_negatives
from r2d2lib.registry import ENCODERS, FUSIONS, HEADS, LOSSES, MODELS


@MODELS.register_module()
class R2D2Model(BaseModel):
    """R2D2: an image and a text encoder ranked by GCPR, two cross encoders re-ranking with FGR.

    Data flow of one training step (mode ``'loss'``):

    1. image encoder -> image tokens [n, P+N, C_v] (P prefix tokens, CLS first); text encoder -> text hidden
       states [n, L, H]; ``vision_proj`` / ``text_proj`` of the first tokens,
       L2-normalised -> retrieval embeddings [n, D];
    2. GCPR (Eq. 1-2) over the embeddings gathered from all ranks;
    3. for every local pair, one hard negative image per text and one hard
       negative text per image from the gathered batch (softmax(sim / tau), same
       image id excluded) -> 3n pairs (positive, text with negative image, image
       with negative text) through both cross encoders -> ITM heads -> FGR (Eq. 3).

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
        gcpr_loss, fgr_loss: LOSSES configs.
        loss_weights: multiplier per loss name (``gcpr``, ``fgr``), Eq. 8 uses 1.
        data_preprocessor: MODELS config of the preprocessor (tokenizer, mean/std).
    """

    def __init__(self, image_encoder: dict, text_encoder: dict, text_image_encoder: dict,
                 image_text_encoder: dict, embed_dim: int = 768,
                 projection_head: dict = dict(type='ProjectionHead'),
                 itm_head: dict = dict(type='ITMHead'),
                 gcpr_loss: dict = dict(type='GCPRLoss'), fgr_loss: dict = dict(type='FGRLoss'),
                 loss_weights: Optional[Dict[str, float]] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='ImageTextDataPreprocessor')
        if isinstance(data_preprocessor, dict):  # built here: mmengine's BaseModel would look
            data_preprocessor = MODELS.build(data_preprocessor)  # in its own root registry
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.image_encoder = ENCODERS.build(image_encoder)
        self.text_encoder = ENCODERS.build(text_encoder)
        self.text_image_encoder = FUSIONS.build(text_image_encoder)
        self.image_text_encoder = FUSIONS.build(image_text_encoder)
        image_width, text_width = self.image_encoder.width, self.text_encoder.width
        self._check_config(image_width, text_width)
        self.vision_proj = HEADS.build(dict(projection_head, in_features=image_width,
                                            out_features=embed_dim))
        self.text_proj = HEADS.build(dict(projection_head, in_features=text_width,
                                          out_features=embed_dim))
        self.image_fusion_proj = HEADS.build(dict(projection_head, in_features=image_width,
                                                  out_features=self.image_text_encoder.width))
        self.text_image_itm_head = HEADS.build(dict(itm_head, in_features=self.text_image_encoder.width))
        self.image_text_itm_head = HEADS.build(dict(itm_head, in_features=self.image_text_encoder.width))
        self.gcpr_loss = LOSSES.build(gcpr_loss)
        self.fgr_loss = LOSSES.build(fgr_loss)
        self.loss_weights = self._loss_weights(loss_weights)

    @staticmethod
    def _loss_weights(weights: Optional[Dict[str, float]]) -> Dict[str, float]:
        """Weights of Eq. 8's terms (1 unless the config says otherwise); unknown names are errors."""
        defaults = dict(gcpr=1.0, fgr=1.0)
        unknown = set(weights or {}) - set(defaults)
        if unknown:
            raise KeyError(f'loss_weights has unknown keys {sorted(unknown)}; known: {sorted(defaults)}')
        return {**defaults, **(weights or {})}

    def _check_config(self, image_width: int, text_width: int) -> None:
        """Fail at build time, naming the key, when parts of the config don't fit together."""
        text_positions = getattr(self.text_encoder, 'max_positions', None)
        expected = {
            'text_image_encoder.width': (self.text_image_encoder.width, text_width),
            'text_image_encoder.kv_width': (self.text_image_encoder.kv_width, image_width),
            'image_text_encoder.kv_width': (self.image_text_encoder.kv_width, text_width),
            'data_preprocessor.image_size': (self.data_preprocessor.image_size,
                                             self.image_encoder.image_size),
        }
        for key, (got, want) in expected.items():
            if got != want:
                raise ValueError(f'{key} is {got} but must be {want} to match the encoders')
        if text_positions is not None and self.data_preprocessor.max_length > text_positions:
            raise ValueError(f'data_preprocessor.max_length {self.data_preprocessor.max_length} '
                             f'exceeds the text encoder\'s {text_positions} positions')

    # ----------------------------------------------------------------- inference API
    def preprocess(self, images: List[Image.Image]) -> Tensor:
        """List of PIL images -> pixel tensor (resize, bicubic, CLIP mean/std)."""
        return self.data_preprocessor.preprocess(images)

    def tokenize(self, texts: Union[str, List[str]]) -> dict:
        """Texts -> ``dict(input_ids, attention_mask)``, padded to 64 tokens by default."""
        return self.data_preprocessor.tokenize(texts)

    def image_features(self, pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        """Image tokens [B, 1+N, C_v] and their L2-normalised embeddings [B, D]."""
        tokens = self.image_encoder(pixel_values)
        return tokens, F.normalize(self.vision_proj(tokens[:, 0]), dim=-1)

    def text_features(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Text hidden states [B, L, H] and their L2-normalised embeddings [B, D]."""
        hidden = self.text_encoder(input_ids, attention_mask)
        return hidden, F.normalize(self.text_proj(hidden[:, 0]), dim=-1)

    def encode_image(self, pixel_values: Tensor) -> Tensor:
        """L2-normalised image embeddings [B, D] for retrieval."""
        return self.image_features(pixel_values)[1]

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """L2-normalised text embeddings [B, D] for retrieval."""
        return self.text_features(input_ids, attention_mask)[1]

    def itm_logits(self, image_tokens: Tensor, text_hidden: Tensor,
                   text_mask: Tensor) -> tuple[Tensor, Tensor]:
        """ITM logits [P, 2] of the text-image and the image-text cross encoder for P pairs."""
        text_image = self.text_image_encoder(text_hidden, image_tokens, x_mask=text_mask)
        image_text = self.image_text_encoder(self.image_fusion_proj(image_tokens), text_hidden,
                                             context_mask=text_mask)
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

    # ----------------------------------------------------------------- mmengine API
    def forward(self, inputs: dict, data_samples: Optional[list] = None, mode: str = 'tensor'):
        """mmengine entry: ``'loss'`` -> dict of losses, ``'predict'`` -> evaluation features,
        ``'tensor'`` -> ``dict(image_embeds, text_embeds)``."""
        if mode == 'loss':
            return self.loss(inputs)
        if mode == 'predict':
            return self.predict(inputs)
        if mode == 'tensor':
            return dict(image_embeds=self.encode_image(inputs['images']),
                        text_embeds=self.encode_text(inputs['input_ids'], inputs['attention_mask']))
        raise ValueError(f'mode must be "loss", "predict" or "tensor", got {mode!r}')

    def predict(self, inputs: dict) -> Dict[str, Tensor]:
        """Features the retrieval loop needs for a batch of pairs (embeddings, tokens, ids)."""
        image_tokens, image_embeds = self.image_features(inputs['images'])
        text_hidden, text_embeds = self.text_features(inputs['input_ids'], inputs['attention_mask'])
        return dict(image_embeds=image_embeds, text_embeds=text_embeds, image_tokens=image_tokens,
                    text_hidden=text_hidden, text_mask=inputs['attention_mask'],
                    image_idx=inputs['image_ids'], text_idx=inputs['text_ids'])

    def loss(self, inputs: dict) -> Dict[str, Tensor]:
        """``loss_gcpr`` (Eq. 2) and ``loss_fgr`` (Eq. 3) for a batch of positive pairs."""
        image_ids, text_mask = inputs['image_ids'], inputs['attention_mask']
        image_tokens, image_embeds = self.image_features(inputs['images'])
        text_hidden, text_embeds = self.text_features(inputs['input_ids'], text_mask)
        loss_gcpr = self.gcpr_loss(image_embeds, text_embeds, image_ids)
        loss_fgr = self.fgr_loss(*self._fgr_logits(image_tokens, image_embeds, text_hidden,
                                                   text_embeds, text_mask, image_ids))
        return dict(loss_gcpr=self.loss_weights['gcpr'] * loss_gcpr,
                    loss_fgr=self.loss_weights['fgr'] * loss_fgr,
                    temperature=self.gcpr_loss.temperature.detach())

    def _fgr_logits(self, image_tokens: Tensor, image_embeds: Tensor, text_hidden: Tensor,
                    text_embeds: Tensor, text_mask: Tensor, image_ids: Tensor):
        """Cross-encoder logits for positives + hard negatives, their labels and valid-pair mask."""
        n = image_ids.shape[0]
        all_ids = all_gather_no_grad(image_ids)
        with torch.no_grad():
            temp = self.gcpr_loss.temperature.detach()
            neg_image, image_ok = sample_hard_negatives(
                text_embeds @ all_gather_no_grad(image_embeds).t(), image_ids, all_ids, temp)
            neg_text, text_ok = sample_hard_negatives(
                image_embeds @ all_gather_no_grad(text_embeds).t(), image_ids, all_ids, temp)
        all_tokens = all_gather_with_grad(image_tokens)
        all_hidden, all_mask = all_gather_with_grad(text_hidden), all_gather_no_grad(text_mask)
        # pairs: (image_i, text_i) | (negative image of text_i, text_i) | (image_i, negative text of image_i)
        images = torch.cat([image_tokens, all_tokens[neg_image], image_tokens])
        texts = torch.cat([text_hidden, text_hidden, all_hidden[neg_text]])
        masks = torch.cat([text_mask, text_mask, all_mask[neg_text]])
        labels = torch.cat([image_ids.new_ones(n), image_ids.new_zeros(2 * n)])
        pair_mask = torch.cat([torch.ones_like(image_ok), image_ok, text_ok])
        text_image_logits, image_text_logits = self.itm_logits(images, texts, masks)
        return text_image_logits, image_text_logits, labels, pair_mask
