"""Numerically safe pieces of the objective under autocast (bf16 / fp16 mixed precision).

Under ``torch.autocast`` a matmul runs in half precision whatever its inputs. For
the similarity logits ``sim / tau`` that is too coarse: with tau down to 0.001 the
logits reach +-1000, where bf16's 8-bit mantissa steps by 4, which would flatten
every softmax over them (GCPR, TgD's soft targets, hard-negative sampling). So
the embeddings are made fp32 (:func:`normalize_fp32`) and their similarities are
computed with autocast switched off (:func:`similarity_fp32`); the losses apply
their softmaxes to ``.float()`` logits. Without autocast both functions are the
plain operations.
"""
import torch
import torch.nn.functional as F
from torch import Tensor


def normalize_fp32(features: Tensor) -> Tensor:
    """L2-normalised fp32 copy of ``features`` [..., D] (the retrieval embeddings)."""
    with torch.autocast(device_type=features.device.type, enabled=False):
        return F.normalize(features.float(), dim=-1)


def similarity_fp32(queries: Tensor, candidates: Tensor, temperature: Tensor | float = 1.0) -> Tensor:
    """``queries @ candidates.T / temperature`` in fp32 with autocast off: [N, D] x [M, D] -> [N, M]."""
    with torch.autocast(device_type=queries.device.type, enabled=False):
        return queries.float() @ candidates.float().t() / temperature
