"""The bidirectional cross-attention transformer that fuses the two modalities.

R2D2 has two of them (Sec. 3.1): a text-image cross encoder (queries: text hidden
states, keys/values: image tokens) and an image-text cross encoder (queries: the
projected image tokens, keys/values: text hidden states). Each layer is a BERT
layer with cross-attention, post-LayerNorm:

    x = LN(x + SelfAttn(x, mask=query_mask))
    x = LN(x + CrossAttn(x, context, mask=context_mask))
    x = LN(x + FFN(x))

Parameter names follow the official checkpoints (``layer.{i}.attention.self.query``
...) so converted weights map one to one. Attention runs on
``torch.nn.functional.scaled_dot_product_attention``; masks are built once per
forward as boolean key masks.
"""
from __future__ import annotations

import math
from typing import List, Optional

import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from r2d2lib.models.utils import checkpointed_call
from r2d2lib.registry import FUSIONS


def key_padding_mask(mask: Optional[Tensor]) -> Optional[Tensor]:
    """Turn a [B, L] keep-mask (1 keep, 0 drop) into a boolean [B, 1, 1, L] SDPA mask.

    Boolean (True = attend) rather than additive so that the same mask works in
    fp32, bf16 and fp16; ``None`` means attend to everything.
    """
    if mask is None:
        return None
    return mask.bool()[:, None, None, :]


class AttentionProjection(nn.Module):
    """Query, key and value projections (names as BERT's ``attention.self``)."""

    def __init__(self, width: int, kv_width: int, num_heads: int, dropout: float):
        super().__init__()
        if width % num_heads:
            raise ValueError(f'width {width} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(kv_width, width)
        self.value = nn.Linear(kv_width, width)
        self.dropout = dropout

    def _heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, x: Tensor, context: Tensor, mask: Optional[Tensor],
                context_index: Optional[Tensor] = None) -> Tensor:
        """Attention of ``x`` [B, N] over ``context`` [B, M], or over ``context[context_index]``: keys and
        values are projected once per distinct context row, then indexed (:class:`CrossEncoder`)."""
        k, v = self.key(context), self.value(context)
        if context_index is not None:
            k, v = k[context_index], v[context_index]
        q, k, v = self._heads(self.query(x)), self._heads(k), self._heads(v)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        b, h, n, d = out.shape
        return out.transpose(1, 2).reshape(b, n, h * d)

    def probabilities(self, x: Tensor, context: Tensor, mask: Optional[Tensor]) -> Tensor:
        """Attention probabilities [B, heads, N, M] of ``x`` over ``context``, computed eagerly.

        The same softmax(q k^T / sqrt(d)) that ``forward`` runs fused through SDPA; only
        visualisation asks for it, so training never materialises the [N, M] maps.
        """
        q, k = self._heads(self.query(x)), self._heads(self.key(context))
        scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float('-inf'))
        return scores.softmax(dim=-1)


class ResidualOutput(nn.Module):
    """Dense -> dropout -> residual add -> LayerNorm (BERT's ``*.output``)."""

    def __init__(self, in_width: int, width: int, dropout: float, eps: float):
        super().__init__()
        self.dense = nn.Linear(in_width, width)
        self.LayerNorm = nn.LayerNorm(width, eps=eps)  # noqa: N815 (official name)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(residual + self.dropout(self.dense(hidden)))


class Attention(nn.Module):
    """Multi-head attention with its output block (BERT's ``attention``)."""

    def __init__(self, width: int, kv_width: int, num_heads: int, dropout: float, eps: float):
        super().__init__()
        self.self = AttentionProjection(width, kv_width, num_heads, dropout)
        self.output = ResidualOutput(width, width, dropout, eps)

    def forward(self, x: Tensor, context: Tensor, mask: Optional[Tensor],
                context_index: Optional[Tensor] = None) -> Tensor:
        return self.output(self.self(x, context, mask, context_index), x)


class Intermediate(nn.Module):
    """The feed-forward expansion (BERT's ``intermediate``)."""

    def __init__(self, width: int, ffn_width: int):
        super().__init__()
        self.dense = nn.Linear(width, ffn_width)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.dense(x))


class CrossEncoderLayer(nn.Module):
    """Self-attention -> cross-attention -> feed-forward, each with residual and post-LayerNorm."""

    def __init__(self, width: int, kv_width: int, num_heads: int, ffn_width: int,
                 dropout: float, eps: float):
        super().__init__()
        self.attention = Attention(width, width, num_heads, dropout, eps)
        self.crossattention = Attention(width, kv_width, num_heads, dropout, eps)
        self.intermediate = Intermediate(width, ffn_width)
        self.output = ResidualOutput(ffn_width, width, dropout, eps)

    def forward(self, x: Tensor, context: Tensor, self_mask: Optional[Tensor],
                cross_mask: Optional[Tensor], attention_maps: Optional[List[Tensor]] = None,
                context_index: Optional[Tensor] = None) -> Tensor:
        """One layer; appends the cross-attention probabilities to ``attention_maps`` if given."""
        x = self.attention(x, x, self_mask)
        if attention_maps is not None:
            rows = context if context_index is None else context[context_index]
            attention_maps.append(self.crossattention.self.probabilities(x, rows, cross_mask))
        x = self.crossattention(x, context, cross_mask, context_index)
        return self.output(self.intermediate(x), x)


@FUSIONS.register_module()
class CrossEncoder(BaseModule):
    """N-layer cross-attention transformer that fuses one modality into the other (Sec. 3.1).

    Args:
        width: hidden width of the query stream (768 in R2D2).
        kv_width: width of the other modality's tokens used as keys/values
            (the raw vision width for the text-image encoder, 768 for the image-text one).
        num_layers: number of layers (6 in R2D2).
        num_heads: attention heads.
        ffn_width: feed-forward width (4 x width in R2D2).
        dropout: dropout of attention probabilities and of every output block (0.1).
        layer_norm_eps: LayerNorm epsilon (1e-12, as BERT).
        init_std: std of the normal initialisation of every Linear weight (BERT's
            ``initializer_range``, 0.02, tuned for width 768; narrow models may want more).
        gradient_checkpointing: recompute each layer's activations in the backward pass
            instead of storing them (training only; same values and gradients).

    Attention is fused (``F.scaled_dot_product_attention``): the [N, M] attention
    matrices are never stored. :meth:`attention_maps` computes them eagerly for
    visualisation only.
    """

    def __init__(self, width: int = 768, kv_width: int = 768, num_layers: int = 6,
                 num_heads: int = 12, ffn_width: Optional[int] = None, dropout: float = 0.1,
                 layer_norm_eps: float = 1e-12, init_std: float = 0.02,
                 gradient_checkpointing: bool = False, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.width, self.kv_width = width, kv_width
        self.gradient_checkpointing = gradient_checkpointing
        self.layer = nn.ModuleList(
            CrossEncoderLayer(width, kv_width, num_heads, ffn_width or 4 * width, dropout, layer_norm_eps)
            for _ in range(num_layers))
        self.init_std = init_std
        self.apply(self._init_bert_weights)

    def _init_bert_weights(self, module: nn.Module) -> None:
        """BERT's initialisation: normal(0, init_std) weights, zero biases, unit LayerNorm."""
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=self.init_std)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, x: Tensor, context: Tensor, x_mask: Optional[Tensor] = None,
                context_mask: Optional[Tensor] = None, context_index: Optional[Tensor] = None) -> Tensor:
        """Fuse ``context`` [B, M, kv_width] into ``x`` [B, N, width].

        ``x_mask`` [B, N] and ``context_mask`` [B, M] are keep-masks (1 = token,
        0 = padding) applied to keys; ``None`` attends to every token.
        ``context_index`` [B]: ``context`` holds only the distinct rows [U, M, kv_width] and row b
        of ``x`` reads ``context[context_index[b]]``; every layer then projects each distinct row to
        keys and values once instead of once per row of ``x`` (FGR's 3n pairs hold n distinct
        images per rank). Returns the fused sequence [B, N, width].
        """
        self_mask = key_padding_mask(x_mask)
        cross_mask = key_padding_mask(context_mask)
        checkpointing = self.gradient_checkpointing and self.training
        for layer in self.layer:
            x = checkpointed_call(layer, x, context, self_mask, cross_mask, None, context_index,
                                  enabled=checkpointing)
        return x

    def attention_maps(self, x: Tensor, context: Tensor, x_mask: Optional[Tensor] = None,
                       context_mask: Optional[Tensor] = None) -> List[Tensor]:
        """Cross-attention probabilities of every layer, a list of [B, heads, N, M] (layer 1 first).

        Row ``n`` of layer ``l`` is how query token ``n`` of ``x`` attends over the
        ``context`` tokens at layer ``l``, e.g. a text token over the image tokens in the
        text-image cross encoder (the paper's Fig. 2 reads the 3rd layer). Padded context
        tokens get probability 0. The fused forward is unchanged; the maps are computed
        eagerly beside it.
        """
        self_mask = key_padding_mask(x_mask)
        cross_mask = key_padding_mask(context_mask)
        maps: List[Tensor] = []
        for layer in self.layer:
            x = layer(x, context, self_mask, cross_mask, attention_maps=maps)
        return maps
