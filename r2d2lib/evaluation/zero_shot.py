"""Zero-shot classification by prompts: class names in templates, ensembled as CLIP does.

Each class name is put into every template (``'一张{}的照片。'``); the text tower
embeds the prompts; a class's embedding is the mean of its prompts'
L2-normalised embeddings, normalised again (CLIP's prompt ensembling,
Radford et al. 2021, Sec. 3.1.4). An image's logits are its cosine similarities
to the class embeddings.
"""
from typing import List, Sequence

import torch.nn.functional as F
from torch import Tensor


def class_prompts(classes: Sequence[str], templates: Sequence[str]) -> List[str]:
    """Every template filled with every class name, class-major: ``[c0 t0, c0 t1, ..., c1 t0, ...]``.

    Raises:
        ValueError: if there is no class or template, or a template has no ``{}``.
    """
    if not classes or not templates:
        raise ValueError(f'need classes and templates, got {len(classes)} classes and '
                         f'{len(templates)} templates')
    for template in templates:
        if '{}' not in template:
            raise ValueError(f'template {template!r} has no "{{}}" for the class name')
    return [template.format(name) for name in classes for template in templates]


def ensemble_class_embeddings(prompt_embeds: Tensor, num_templates: int) -> Tensor:
    """``[C * T, D]`` prompt embeddings (class-major) -> ``[C, D]`` class embeddings.

    Each prompt embedding is L2-normalised, the T of a class are averaged and
    the mean is L2-normalised again. Computed in float32.
    """
    if num_templates < 1 or prompt_embeds.shape[0] % num_templates:
        raise ValueError(f'{prompt_embeds.shape[0]} prompt embeddings do not split into groups of '
                         f'{num_templates} templates')
    per_class = F.normalize(prompt_embeds.float(), dim=-1).view(-1, num_templates,
                                                                 prompt_embeds.shape[-1])
    return F.normalize(per_class.mean(dim=1), dim=-1)


def zero_shot_logits(image_embeds: Tensor, class_embeds: Tensor) -> Tensor:
    """``[B, C]`` cosine similarities of L2-normalised images to the class embeddings."""
    return F.normalize(image_embeds.float(), dim=-1) @ class_embeds.float().t()


__all__ = ['class_prompts', 'ensemble_class_embeddings', 'zero_shot_logits']
