"""Model utilities: distributed gathering, hard-negative sampling, token and patch masking,
fp32 similarities under autocast, gradient checkpointing."""
from .checkpointing import checkpointed_call
from .distributed import all_gather_no_grad, all_gather_with_grad
from .hard_negatives import sample_hard_negatives
from .masking import IGNORE_INDEX, keep_patch_tokens, mask_tokens, random_patch_keep
from .precision import normalize_fp32, similarity_fp32

__all__ = ['IGNORE_INDEX', 'all_gather_no_grad', 'all_gather_with_grad', 'checkpointed_call',
           'keep_patch_tokens', 'mask_tokens', 'normalize_fp32', 'random_patch_keep',
           'sample_hard_negatives', 'similarity_fp32']
