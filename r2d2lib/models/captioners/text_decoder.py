"""BERT text decoder for captioning: causal self-attention, cross-attention over image tokens, an LM head."""
from __future__ import annotations

from typing import Mapping, Optional

import torch
from torch import Tensor
from transformers import BertLMHeadModel

from r2d2lib.io.checkpoint import PretrainedLoadError
from r2d2lib.models.encoders.base import quiet_transformers
from r2d2lib.models.encoders.hf_bert import BertBackbone
from r2d2lib.registry import FUSIONS

#: Keys of a decoder that a text encoder (BertModel) does not have: BLIP initialises them afresh.
DECODER_ONLY_PARTS = ('.crossattention.', 'cls.predictions.')


@FUSIONS.register_module()
class HFBertDecoder(BertBackbone):
    """Chinese text decoder over image tokens: transformers' ``BertLMHeadModel`` with ``is_decoder=True,
    add_cross_attention=True`` as ``self.model`` (BLIP's captioning decoder).

    Registered in ``FUSIONS``: it fuses the image tokens into text through cross-attention in every
    layer. Generation is transformers' (``self.model.generate``, see
    :meth:`~r2d2lib.models.captioners.ImageCaptioner.generate`).

    Args:
        config: ``BertConfig`` fields, merged over ``hfl/chinese-roberta-wwm-ext``'s; ``is_decoder`` and
            ``add_cross_attention`` are always set. The LM head's output weights are not tied to the word
            embeddings (``tie_word_embeddings=False`` unless given): mmengine's optimizer constructor
            with a ``paramwise_cfg`` would put a tied tensor in two parameter groups, which torch refuses.
        pretrained: a BertModel checkpoint (local folder or Hub id, e.g. ``'hfl/chinese-roberta-wwm-ext'``)
            whose self-attention, feed-forward and embedding weights initialise the decoder in
            :meth:`init_weights`, as BLIP initialises its decoder from BERT: only the cross-attention
            and the LM head start afresh; any other missing or unexpected key raises.
        frozen: freeze the decoder (see :class:`~r2d2lib.models.encoders.base.BaseEncoder`).
        attn_implementation: ``'sdpa'`` (default) or ``'eager'``.
        gradient_checkpointing: recompute each layer in the backward pass.

    Attributes:
        width: hidden size H, the width its cross-attention expects of the image tokens.
        vocab_size, max_positions: as :class:`~r2d2lib.models.encoders.HFBertEncoder`.
    """

    def __init__(self, config: Optional[dict] = None, pretrained: Optional[str] = None, frozen: bool = False,
                 attn_implementation: str = 'sdpa', gradient_checkpointing: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(frozen=frozen, gradient_checkpointing=gradient_checkpointing, init_cfg=init_cfg)
        self._build_bert(BertLMHeadModel, config, attn_implementation,
                         defaults={'tie_word_embeddings': False},
                         forced={'is_decoder': True, 'add_cross_attention': True})
        self.pretrained = pretrained
        self._finish_build()

    def load_pretrained(self) -> None:
        """Initialise from ``pretrained`` (a BertModel checkpoint), see the class doc."""
        if self.pretrained:
            from transformers import BertModel
            with quiet_transformers():
                encoder = BertModel.from_pretrained(self.pretrained, add_pooling_layer=False)
            self.load_text_encoder_state(encoder.state_dict(), str(self.pretrained))

    def load_text_encoder_state(self, state: Mapping[str, Tensor], source: str) -> None:
        """Copy a text encoder's ``BertModel`` weights (keys without ``bert.``) into the decoder.

        Every decoder key except the cross-attention and the LM head must be given, with its shape;
        keys the decoder lacks (a pooler) are refused. Raises :class:`PretrainedLoadError` naming them.
        """
        target = self.model.bert.state_dict()
        missing = sorted(k for k in target if k not in state and not any(p in f'.{k}' for p in
                                                                        DECODER_ONLY_PARTS))
        unexpected = sorted(k for k in state if k not in target)
        shapes = sorted(f'{k}: {tuple(v.shape)} vs {tuple(target[k].shape)}' for k, v in state.items()
                        if k in target and v.shape != target[k].shape)
        if missing or unexpected or shapes:
            raise PretrainedLoadError(f'cannot initialise the text decoder from {source}: missing '
                                      f'{missing[:8]}, unexpected {unexpected[:8]}, shapes {shapes[:8]}')
        with torch.no_grad():
            for key, value in state.items():
                target[key].copy_(value)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, image_tokens: Tensor,
                image_mask: Optional[Tensor] = None) -> Tensor:
        """Next-token logits ``[B, L, V]`` of ``input_ids`` ``[B, L]`` attending to ``image_tokens``
        ``[B, N, H]`` (position i predicts token i + 1)."""
        return self.run_frozen(self._logits, input_ids, attention_mask, image_tokens, image_mask)

    def _logits(self, input_ids: Tensor, attention_mask: Tensor, image_tokens: Tensor,
                image_mask: Optional[Tensor]) -> Tensor:
        if image_mask is None:
            image_mask = torch.ones(image_tokens.shape[:2], dtype=torch.long, device=image_tokens.device)
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          encoder_hidden_states=image_tokens, encoder_attention_mask=image_mask,
                          use_cache=False).logits
