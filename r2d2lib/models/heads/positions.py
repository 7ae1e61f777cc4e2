"""Image tokens for cross-attention (a captioner's decoder, R2D2's cross encoders), with where each patch is
written into its token."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from r2d2lib.registry import HEADS


def sincos_2d(side: int, dim: int) -> Tensor:
    """Fixed 2-D sine-cosine position encoding [side * side, dim] of a row-major patch grid (MAE's):
    the first half of the channels encodes the column, the second half the row."""
    if dim % 4:
        raise ValueError(f'the 2-D sine-cosine encoding needs a width divisible by 4, got {dim}')
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    axis = torch.arange(side, dtype=torch.float64)
    rows, cols = torch.meshgrid(axis, axis, indexing='ij')
    parts = []
    for coord in (cols.flatten(), rows.flatten()):
        angles = coord[:, None] * omega[None]
        parts += [torch.sin(angles), torch.cos(angles)]
    return torch.cat(parts, dim=1).float()


@HEADS.register_module()
class PositionalTokenProjection(nn.Module):
    """Image tokens for cross-attention: LayerNorm, a linear map to the decoder's width (or none when the
    widths are equal), plus ``scale`` x a fixed 2-D sine-cosine encoding of each patch's grid position
    (prefix tokens such as CLS get none).

    Cross-attention sees a bag of tokens: a patch token's position reaches it only through the token's
    content, and a ViT's last-layer patch tokens keep little of it (on the toy demo a linear probe reads a
    single token's quadrant 48% of the time, chance 25%). Captions that say where things are need it back.

    Args:
        in_features: the image tokens' width C_v.
        out_features: the decoder's width H (divisible by 4).
        num_prefix_tokens: tokens before the patch grid (1: CLS); the rest must form a square grid.
        scale: weight of the position encoding (LayerNormed tokens have unit scale).
    """

    def __init__(self, in_features: int, out_features: int, num_prefix_tokens: int = 1, scale: float = 1.0):
        super().__init__()
        if out_features % 4:
            raise ValueError(f'PositionalTokenProjection needs out_features divisible by 4, '
                             f'got {out_features}')
        self.norm = nn.LayerNorm(in_features)
        self.proj = nn.Identity() if in_features == out_features else nn.Linear(in_features, out_features)
        self.num_prefix_tokens = num_prefix_tokens
        self.scale = float(scale)
        self.out_features = out_features

    def forward(self, tokens: Tensor) -> Tensor:
        """[B, P + S * S, C_v] -> [B, P + S * S, H]."""
        patches = tokens.shape[1] - self.num_prefix_tokens
        side = math.isqrt(max(patches, 0))
        if patches <= 0 or side * side != patches:
            raise ValueError(f'PositionalTokenProjection expects {self.num_prefix_tokens} prefix token(s) '
                             f'and a square patch grid, got {tokens.shape[1]} tokens')
        out = self.proj(self.norm(tokens))
        positions = sincos_2d(side, self.out_features).to(out)
        prefix = positions.new_zeros(self.num_prefix_tokens, self.out_features)
        return out + self.scale * torch.cat([prefix, positions])
