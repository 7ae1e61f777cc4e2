"""Save and restore the random number generators with each checkpoint, for exact resume."""
import random

import numpy as np
import torch
from mmengine.hooks import Hook

from r2d2lib.registry import HOOKS


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Carry the Python, numpy, torch (and CUDA) RNG states in checkpoints.

    mmengine restores model, optimizer, schedulers and the sampler's position on
    resume, but not the global generators, which drive dropout, hard-negative
    sampling and random augmentations. Without them a resumed run diverges from an
    uninterrupted one. The states are restored just before the first iteration
    after resume, i.e. after the loop has advanced the dataloader past the data
    already trained on, so they continue exactly where the saved run stopped.
    """

    priority = 'VERY_LOW'

    def __init__(self):
        self._pending = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = dict(python=random.getstate(), numpy=np.random.get_state(),
                     torch=torch.get_rng_state())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint['random_state'] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending = checkpoint.get('random_state')

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
        torch.set_rng_state(state['torch'])
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])
