"""Training hooks."""
from .momentum_update_hook import MomentumUpdateHook
from .progress_bar_hook import ProgressBarHook
from .random_state_hook import RandomStateHook

__all__ = ['MomentumUpdateHook', 'ProgressBarHook', 'RandomStateHook']
