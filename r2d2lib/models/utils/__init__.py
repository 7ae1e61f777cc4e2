"""Model utilities: distributed gathering, hard-negative sampling."""
from .distributed import all_gather_no_grad, all_gather_with_grad
from .hard_negatives import sample_hard_negatives

__all__ = ['all_gather_no_grad', 'all_gather_with_grad', 'sample_hard_negatives']
