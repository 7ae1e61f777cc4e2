"""Training a captioner: the language-modelling loss with label smoothing (BLIP's captioning objective)."""
from __future__ import annotations

from typing import Dict, Optional

import torch.nn.functional as F
from torch import Tensor, nn

from r2d2lib.registry import LOSSES, OBJECTIVES


@LOSSES.register_module()
class CaptionLMLoss(nn.Module):
    """Token-level cross-entropy of next-token logits with label smoothing, averaged over real tokens.

    For position i with target y and log-probabilities log p over the V tokens:
    ``(1 - eps) * -log p_y + eps * mean_v(-log p_v)`` (``torch``'s ``label_smoothing``; BLIP uses
    eps = 0.1); positions whose target is padding do not count.

    Args:
        label_smoothing: eps in [0, 1).
        name: the loss's key is ``loss_<name>``.
    """

    def __init__(self, label_smoothing: float = 0.1, name: str = 'lm'):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f'label_smoothing must be in [0, 1), got {label_smoothing}')
        self.label_smoothing = label_smoothing
        self.name = name

    def forward(self, logits: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """``logits`` [B, L, V] of ``input_ids`` [B, L]: position i scored against token i + 1."""
        targets = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100)
        scores = logits[:, :-1].float()
        return F.cross_entropy(scores.reshape(-1, scores.shape[-1]), targets.reshape(-1),
                               ignore_index=-100, label_smoothing=self.label_smoothing)


@OBJECTIVES.register_module()
class CaptionObjective(nn.Module):
    """An :class:`~r2d2lib.models.captioners.ImageCaptioner` trained by language modelling of its
    captions given the image (teacher forcing): ``loss_<lm.name>`` = weight x :class:`CaptionLMLoss`.

    Args:
        model: the captioner (filled in; not kept).
        lm: LOSSES config of the language-modelling loss.
        weights: ``dict(lm=...)``.
    """

    def __init__(self, model: nn.Module, lm: dict = dict(type='CaptionLMLoss'),
                 weights: Optional[Dict[str, float]] = None):
        super().__init__()
        self.lm = LOSSES.build(lm)
        unknown = set(weights or {}) - {self.lm.name}
        if unknown:
            raise KeyError(f'objective.weights has unknown keys {sorted(unknown)}; this objective computes '
                           f"['{self.lm.name}']")
        self.weights = {self.lm.name: float((weights or {}).get(self.lm.name, 1.0))}

    def sync_teacher(self, model: nn.Module) -> None:
        """No teacher: nothing to do."""

    def forward(self, model: nn.Module, inputs: dict) -> Dict[str, Tensor]:
        """``dict(loss_lm=...)`` of a batch of ``images``, ``input_ids``, ``attention_mask``."""
        logits = model.caption_logits(inputs['images'], inputs['input_ids'], inputs['attention_mask'])
        loss = self.lm(logits, inputs['input_ids'], inputs['attention_mask'])
        return {f'loss_{self.lm.name}': self.weights[self.lm.name] * loss}
