"""Data preprocessor of the matching fine-tuning: image-text pairs with their 0/1 labels."""
from __future__ import annotations

from typing import Any

import torch

from r2d2lib.registry import MODELS

from .image_text import ImageTextDataPreprocessor


def _sample_label(sample: Any) -> int:
    """The 0/1 ``label`` of one data sample; anything else is an error naming the sample."""
    where = getattr(sample, 'img_path', None) or getattr(sample, 'image_id', '?')
    label = getattr(sample, 'label', None)
    if label is None:
        raise KeyError(f'data sample of {where} has no "label": a matching dataset must give each pair '
                       'label 1 (matched) or 0 (not matched), packed with '
                       "PackInputs(algorithm_keys=[..., 'label'])")
    if isinstance(label, torch.Tensor):
        label = label.item() if label.numel() == 1 else None
    if label not in (0, 1):
        raise ValueError(f'data sample of {where}: "label" must be 0 or 1, got {label!r}')
    return int(label)


@MODELS.register_module()
class MatchingDataPreprocessor(ImageTextDataPreprocessor):
    """:class:`ImageTextDataPreprocessor` that also passes each pair's label to ``forward``.

    Output: ``inputs`` as the parent's (``images``, ``input_ids``, ``attention_mask``,
    ``image_ids``, ``text_ids``) plus ``labels`` [B] (int64, 1 = matched, 0 = not),
    read from every data sample's ``label``. A missing label or a value other than
    0/1 raises, naming the sample's image.
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        out = super().forward(data, training)
        labels = [_sample_label(sample) for sample in out['data_samples']]
        out['inputs']['labels'] = torch.tensor(labels, dtype=torch.long, device=self.device)
        return out
