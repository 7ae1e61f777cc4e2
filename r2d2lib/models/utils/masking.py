"""Input masking for MLM (Sec. 3.2) and the student of feature-guided distillation (Sec. 3.3)."""
from typing import Iterable, Optional, Tuple, Union

import torch
from torch import Tensor

IGNORE_INDEX = -100  # label of positions the MLM loss ignores (transformers' and torch's convention)


def mask_tokens(input_ids: Tensor, attention_mask: Tensor, mask_token_id: int,
                special_ids: Union[Iterable[int], Tensor], ratio: float = 0.15,
                generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
    """Replace a random ``ratio`` of the text tokens by ``[MASK]``, as R2D2's MLM (Sec. 3.2).

    Every real token (``attention_mask == 1``) that is not a special token
    (``[CLS]``, ``[SEP]``, ``[PAD]``, ...) is masked independently with probability
    ``ratio``; all of them become ``[MASK]`` ("to avoid changing the semantics of
    the text", unlike BERT's 80/10/10 rule). ``special_ids`` may be a tensor already on
    the device (the training step passes one, to avoid a host-to-device copy per step).

    Returns:
        ``(masked_ids, labels)``: the masked copy of ``input_ids`` and the MLM labels,
        the original id at masked positions and ``IGNORE_INDEX`` everywhere else.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f'mask ratio must be in [0, 1], got {ratio}')
    if isinstance(special_ids, Tensor):
        special = special_ids.to(device=input_ids.device, dtype=input_ids.dtype)
    else:
        special = torch.tensor(sorted(set(special_ids)), device=input_ids.device, dtype=input_ids.dtype)
    candidate = attention_mask.bool() & ~torch.isin(input_ids, special)
    draw = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    masked = candidate & (draw < ratio)
    masked_ids = input_ids.masked_fill(masked, mask_token_id)
    labels = input_ids.masked_fill(~masked, IGNORE_INDEX)
    return masked_ids, labels


def random_patch_keep(batch_size: int, num_patches: int, drop_ratio: float,
                      device: Optional[torch.device] = None,
                      generator: Optional[torch.Generator] = None) -> Tensor:
    """Indices ``[B, K]`` (ascending) of the patch tokens an image keeps; the rest are dropped.

    Each image keeps ``K = num_patches - round(drop_ratio * num_patches)`` patches
    (at least one), chosen uniformly without replacement, independently per image.
    The FgD student sees only these (Sec. 3.3, "masked inputs" on the image side).
    """
    if not 0.0 <= drop_ratio < 1.0:
        raise ValueError(f'patch drop ratio must be in [0, 1), got {drop_ratio}')
    keep = max(1, num_patches - round(drop_ratio * num_patches))
    noise = torch.rand(batch_size, num_patches, generator=generator, device=device)
    return noise.argsort(dim=1)[:, :keep].sort(dim=1).values


def keep_patch_tokens(tokens: Tensor, patch_keep: Tensor, num_prefix_tokens: int) -> Tensor:
    """Tokens ``[B, P+N, C]`` -> ``[B, P+K, C]``: every prefix token (CLS first) and the kept patches.

    Shapes are checked here; the index values are not (reading them would be a host
    sync in every training step): an index >= N fails in ``gather``.
    """
    prefix, patches = tokens[:, :num_prefix_tokens], tokens[:, num_prefix_tokens:]
    if (patch_keep.dim() != 2 or patch_keep.shape[0] != tokens.shape[0]
            or patch_keep.shape[1] > patches.shape[1]):
        raise ValueError(f'patch_keep {tuple(patch_keep.shape)} does not index the '
                         f'{patches.shape[1]} patches of a batch of {tokens.shape[0]}')
    index = patch_keep.to(tokens.device)[..., None].expand(-1, -1, tokens.shape[-1])
    return torch.cat([prefix, patches.gather(1, index)], dim=1)
