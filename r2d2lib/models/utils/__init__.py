"""Model utilities: distributed gathering, hard-negative sampling, token and patch masking."""
from .distributed import all_gather_no_grad, all_gather_with_grad
from .hard_negatives import sample_hard_negatives
from .masking import IGNORE_INDEX, keep_patch_tokens, mask_tokens, random_patch_keep

__all__ = ['IGNORE_INDEX', 'all_gather_no_grad', 'all_gather_with_grad', 'keep_patch_tokens',
           'mask_tokens', 'random_patch_keep', 'sample_hard_negatives']
