"""Training hooks."""
from .progress_bar_hook import ProgressBarHook
from .random_state_hook import RandomStateHook

__all__ = ['ProgressBarHook', 'RandomStateHook']
