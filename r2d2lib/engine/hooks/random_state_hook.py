"""Save and restore the random number generators with each checkpoint, for exact resume."""
import random

import numpy as np
import torch
from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log

from r2d2lib.registry import HOOKS


def capture_random_state() -> dict:
    """States of the Python, numpy, torch CPU and current CUDA device generators."""
    state = dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state()
    return state


def restore_random_state(state: dict) -> None:
    """Inverse of :func:`capture_random_state`."""
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'])


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Carry the Python, numpy, torch and CUDA RNG states in checkpoints (single process).

    mmengine restores model, optimizer, schedulers and the sampler's position on
    resume, but not the global generators, which drive dropout and hard-negative
    sampling. The state saved with a checkpoint is restored at the first training
    iteration after it, both in the run that saved it and in a run resumed from it,
    so the RNG draws made in between (validation, building the next epoch's data
    iterator, the dataloader skip of an iteration-based resume) do not matter: the
    two runs continue identically.

    Limits: exact when data augmentation runs in dataloader workers (mmengine seeds
    them per worker) or is deterministic; a random augmentation in the main process
    (``num_workers=0``) of the first batch after the checkpoint is not covered.
    With several ranks only rank 0 saves checkpoints, so the hook does nothing and
    says so: resume is then reproducible in data order but not bit-exact.
    """

    priority = 'VERY_LOW'

    def __init__(self):
        self._pending = None

    def before_train(self, runner) -> None:
        if get_world_size() > 1:
            print_log('RandomStateHook: RNG states are not restored with several ranks.',
                      logger='current')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if get_world_size() > 1:
            return
        checkpoint['random_state'] = self._pending = capture_random_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if get_world_size() == 1:
            self._pending = checkpoint.get('random_state')

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._pending is not None:
            restore_random_state(self._pending)
            self._pending = None
