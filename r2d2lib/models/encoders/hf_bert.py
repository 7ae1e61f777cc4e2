"""BERT text encoder (transformers ``BertModel``): R2D2's text tower (RoBERTa-wwm-ext)."""
from torch import Tensor
from transformers import BertConfig, BertModel

from r2d2lib.registry import ENCODERS

from .base import BaseEncoder, load_hf_pretrained

# hfl/chinese-roberta-wwm-ext (a BERT-base architecture with a Chinese vocabulary).
CHINESE_ROBERTA_WWM_EXT_CONFIG: dict = dict(
    vocab_size=21128, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, hidden_act='gelu', hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1, max_position_embeddings=512, type_vocab_size=2,
    initializer_range=0.02, layer_norm_eps=1e-12, pad_token_id=0)

# Checkpoint keys dropped by name: the pooler (not built) and the pretraining heads of
# BertForPreTraining / BertForMaskedLM checkpoints, with or without the ``bert.`` prefix.
DROPPED_PREFIXES: tuple[str, ...] = ('pooler.', 'bert.pooler.', 'cls.')

# Config fields that shapes cannot check; a pretrained checkpoint must agree on them.
SAME_CONFIG: tuple[str, ...] = ('hidden_act', 'layer_norm_eps', 'num_attention_heads')


class BertBackbone(BaseEncoder):
    """What the BERT text encoder and the captioning decoder share: a transformers BERT model built from
    ``config`` merged over RoBERTa-wwm-ext's as ``self.model``, its sizes, and gradient checkpointing."""

    def _build_bert(self, model_cls: type, config: dict | None, attn_implementation: str,
                    defaults: dict | None = None, forced: dict | None = None, **model_kwargs) -> None:
        """``self.model = model_cls(BertConfig(...), **model_kwargs)`` with the fields, in increasing
        precedence: RoBERTa-wwm-ext's, ``defaults``, ``config``, ``forced`` and ``attn_implementation``."""
        cfg = {**CHINESE_ROBERTA_WWM_EXT_CONFIG, **(defaults or {}), **(config or {}), **(forced or {}),
               'attn_implementation': attn_implementation}
        self.model = model_cls(BertConfig(**cfg), **model_kwargs)
        self.width: int = self.model.config.hidden_size
        self.vocab_size: int = self.model.config.vocab_size
        self.max_positions: int = self.model.config.max_position_embeddings

    def _enable_gradient_checkpointing(self) -> None:
        self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=dict(use_reentrant=False))


@ENCODERS.register_module()
class HFBertEncoder(BertBackbone):
    """BERT text encoder returning the last hidden states of every token.

    Wraps ``transformers.BertModel(config, add_pooling_layer=False)`` as ``self.model``.

    Args:
        config: ``BertConfig`` fields, merged over the values of
            ``hfl/chinese-roberta-wwm-ext`` (``None``: exactly those).
        pretrained: local directory or hub id (``'hfl/chinese-roberta-wwm-ext'``),
            loaded strictly by :meth:`init_weights` (never at build). Keys may carry
            the ``bert.`` prefix of head-model checkpoints; the pooler and the ``cls.``
            pretraining heads are dropped by name; any other missing, unexpected or
            wrong-shaped key raises.
        frozen: freeze the encoder (see :class:`BaseEncoder`).
        attn_implementation: ``'sdpa'`` (default: fused attention, no attention
            matrix stored) or ``'eager'`` (or any other transformers attention backend,
            ``'flash_attention_2'`` on a GPU with flash-attn installed); overrides one
            given in ``config``.
        gradient_checkpointing: recompute each BERT layer in the backward pass
            (transformers' ``gradient_checkpointing_enable``, non-reentrant).
        init_cfg: mmengine initialisation config.

    Attributes:
        width: hidden size H. vocab_size: size of the token vocabulary.
        max_positions: the longest token sequence the position embeddings cover.
    """

    def __init__(self, config: dict | None = None, pretrained: str | None = None,
                 frozen: bool = False, attn_implementation: str = 'sdpa',
                 gradient_checkpointing: bool = False, init_cfg: dict | list[dict] | None = None):
        super().__init__(frozen=frozen, gradient_checkpointing=gradient_checkpointing, init_cfg=init_cfg)
        self._build_bert(BertModel, config, attn_implementation, add_pooling_layer=False)
        self.pretrained = pretrained
        self._finish_build()

    def load_pretrained(self) -> None:
        """Strictly load ``pretrained`` (BertModel or BertFor* checkpoint)."""
        if self.pretrained:
            load_hf_pretrained(self.model, BertModel, self.pretrained,
                               ignore_prefixes=DROPPED_PREFIXES, same_config=SAME_CONFIG,
                               add_pooling_layer=False)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        """Hidden states ``[B, L, H]`` of token ids ``[B, L]`` (mask: 1 keep, 0 padding)."""
        return self.run_frozen(self._hidden_states, input_ids, attention_mask, token_type_ids)

    def _hidden_states(self, input_ids: Tensor, attention_mask: Tensor | None,
                       token_type_ids: Tensor | None) -> Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state
