"""Save and restore the random number generators with each checkpoint, for exact resume."""
import random
from typing import List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
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
    """Carry every rank's Python, numpy, torch and CUDA RNG states in checkpoints.

    mmengine restores model, optimizer, schedulers and the sampler's position on
    resume (every rank's ``DefaultSampler`` follows from the shared seed, the epoch
    and the iteration count), but not the global generators, which drive dropout,
    masking and hard-negative sampling. The state saved with a checkpoint is restored
    at the first training iteration after it, both in the run that saved it and in a
    run resumed from it, so the RNG draws made in between (validation, building the
    next epoch's data iterator, the dataloader skip of an iteration-based resume) do
    not matter: the two runs continue identically.

    One process: the state is captured when the checkpoint is saved (``random_state``:
    one dict). Several ranks: only rank 0 writes checkpoints, so after every training
    iteration and epoch (before ``CheckpointHook``, hence priority ``LOW``) every rank
    captures its state, which it restores at the next iteration, and the ranks gather
    them (``all_gather_object``: a few kB per rank and iteration); ``random_state`` is
    then the list of every rank's state, and on resume each rank takes its own. A
    checkpoint saved with another number of ranks resumes without RNG states (logged).

    Limits: exact when data augmentation runs in dataloader workers (mmengine seeds
    them per worker) or is deterministic; a random augmentation in the main process
    (``num_workers=0``) of the first batch after the checkpoint is not covered.
    """

    priority = 'LOW'

    def __init__(self):
        self._pending: Optional[dict] = None
        self._all_ranks: Optional[List[dict]] = None

    def _capture_every_rank(self) -> None:
        if get_world_size() > 1:
            self._pending = capture_random_state()
            self._all_ranks = all_gather_object(self._pending)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._capture_every_rank()

    def after_train_epoch(self, runner) -> None:
        self._capture_every_rank()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if get_world_size() == 1:
            checkpoint['random_state'] = self._pending = capture_random_state()
        elif self._all_ranks is not None:
            checkpoint['random_state'] = self._all_ranks

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state, world = checkpoint.get('random_state'), get_world_size()
        saved = 1 if isinstance(state, dict) else len(state) if isinstance(state, list) else None
        if saved is None:
            return
        if saved != world:
            print_log(f'RandomStateHook: the checkpoint holds the RNG states of {saved} rank(s), this run '
                      f'has {world}: they are not restored.', logger='current', level=30)
            return
        self._pending = state if isinstance(state, dict) else state[get_rank()]

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._pending is not None:
            restore_random_state(self._pending)
            self._pending = None
