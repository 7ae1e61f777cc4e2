"""mmengine's Runner with strict checkpoint loading under r2d2lib's trust policy, the process group's
backend chosen from the machine, and the config the tools hand it."""
import copy
import datetime
import os.path as osp
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel, is_model_wrapper
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint_to_model

from r2d2lib.engine.hooks.momentum_update_hook import has_teacher
from r2d2lib.io.checkpoint import CheckpointFileError, load_checkpoint_file, newest_readable_checkpoint


def load_config(path: str, cfg_options: Optional[dict] = None, work_dir: Optional[str] = None,
                launcher: str = 'none') -> Config:
    """A config file with command-line overrides applied, its work dir and launcher set.

    The work dir defaults to the config's own, else ``work_dirs/<config file name>``.
    """
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(cfg_options or {})
    cfg.launcher = launcher
    cfg.work_dir = work_dir or cfg.get('work_dir') or osp.join(
        'work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


class StrictRunner(Runner):
    """An mmengine Runner whose checkpoint loads are strict and follow r2d2lib's trust policy.

    mmengine loads checkpoints with ``strict=False`` and only logs the keys it
    could not match, so a wrong file evaluates or trains a half-random model.
    Here every load is strict: the error names the keys. Files are read by
    :func:`r2d2lib.io.checkpoint.load_checkpoint_file`: weights-only (tensors and the
    plain data of mmengine checkpoints); a file that needs a full unpickle is refused
    unless the config sets ``allow_pickle=True`` (the tools' ``--allow-pickle``) or it
    is ``--resume`` of a checkpoint inside the run's own work dir. Training also
    refuses a model with a momentum teacher but no ``MomentumUpdateHook``.
    ``tools/train.py`` and ``tools/test.py`` use this runner.

    Distributed runs (docs/distributed.md): ``env_cfg.dist_cfg.backend`` is honoured when the
    config sets it; unset or None it is ``nccl`` where CUDA is available and ``gloo`` otherwise.
    Without CUDA the ``pytorch`` launcher (torchrun, ``tools/dist_train.sh``) works: the process
    group is created here without mmengine's ``torch.cuda.set_device``, and the model is wrapped
    in DDP without device ids.
    """

    def setup_env(self, env_cfg: dict) -> None:
        """mmengine's set-up with the backend chosen from the machine (see the class doc)."""
        env_cfg = copy.deepcopy(dict(env_cfg))
        dist_cfg = dict(env_cfg.get('dist_cfg') or {})
        cuda = torch.cuda.is_available()
        dist_cfg['backend'] = dist_cfg.get('backend') or ('nccl' if cuda else 'gloo')
        env_cfg['dist_cfg'] = dist_cfg
        if self.distributed and not torch_dist.is_initialized() and not cuda:
            if dist_cfg['backend'] == 'nccl':
                raise ValueError("env_cfg.dist_cfg.backend='nccl' needs CUDA GPUs and this machine has "
                                 "none: set backend='gloo', or None to choose from the machine")
            if self.launcher != 'pytorch':
                raise ValueError(f'launcher {self.launcher!r} without CUDA is not supported: mmengine '
                                 "sets a CUDA device; use --launcher pytorch (torchrun) on CPUs")
            kwargs = {k: v for k, v in dist_cfg.items() if k not in ('backend', 'init_backend')}
            if kwargs.get('timeout') is not None:
                kwargs['timeout'] = datetime.timedelta(seconds=kwargs['timeout'])
            torch_dist.init_process_group(backend=dist_cfg['backend'], **kwargs)  # env:// from torchrun
        super().setup_env(env_cfg)

    def wrap_model(self, model_wrapper_cfg: Optional[dict], model: torch.nn.Module) -> torch.nn.Module:
        """mmengine's wrapping, except on CPUs: DDP without ``device_ids`` (mmengine passes a GPU's)."""
        if (not self.distributed or torch.cuda.is_available() or model_wrapper_cfg is not None
                or is_model_wrapper(model)):
            return super().wrap_model(model_wrapper_cfg, model)
        return MMDistributedDataParallel(
            module=model, broadcast_buffers=False,
            find_unused_parameters=self.cfg.get('find_unused_parameters', False))

    def train(self):
        """Check that a model with a momentum teacher has the hook that moves it, then train."""
        model = self.model.module if is_model_wrapper(self.model) else self.model
        has_hook = any(type(hook).__name__ == 'MomentumUpdateHook' for hook in self.hooks)
        if has_teacher(model) and not has_hook:
            raise ValueError('the model has a momentum teacher but custom_hooks has no '
                             'MomentumUpdateHook: the teacher would never move')
        return super().train()

    def _maybe_compile(self, target: str) -> None:
        compile_cfg = self.cfg.get('compile', None)
        model = self.model.module if is_model_wrapper(self.model) else self.model
        if target != 'train_step' or not compile_cfg or not hasattr(model, 'compile_training'):
            return super()._maybe_compile(target)
        if not isinstance(compile_cfg, (bool, dict)):
            raise TypeError(f'config key `compile` must be a bool or a dict of torch.compile '
                            f'arguments, got {compile_cfg!r}')
        model.compile_training(**(compile_cfg if isinstance(compile_cfg, dict) else {}))
        self.logger.info(f'Compiled the training step of {type(model).__name__} '
                         f'(torch.compile {compile_cfg}); the first iterations are slow.')

    def _may_unpickle(self, filename: str) -> bool:
        """The opt-in for a full unpickle: the config's ``allow_pickle``, or ``--resume`` of a checkpoint
        in this run's own work dir (written by this run)."""
        if self.cfg.get('allow_pickle', False):
            return True
        own_dir = Path(self.work_dir).resolve()
        return bool(self._resume) and own_dir in Path(filename).resolve().parents

    def load_checkpoint(self, filename: str, map_location='cpu', strict: bool = True,
                        revise_keys=((r'^module.', ''),)):
        """Read ``filename`` through :func:`~r2d2lib.io.checkpoint.load_checkpoint_file` (the trust policy),
        then load it into the model strictly (what mmengine's ``load_checkpoint`` does after reading)."""
        checkpoint = load_checkpoint_file(filename, allow_pickle=self._may_unpickle(filename),
                                          map_location=map_location)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) else self.model
        checkpoint = _load_checkpoint_to_model(model, checkpoint, strict, revise_keys=list(revise_keys))
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    def resume(self, filename: str, resume_optimizer: bool = True, resume_param_scheduler: bool = True,
               map_location='default') -> None:
        """mmengine's resume; with ``--resume`` of the work dir's latest checkpoint (no file given), a
        truncated or corrupt latest file falls back to the newest readable one, with a warning naming both."""
        try:
            return super().resume(filename, resume_optimizer, resume_param_scheduler, map_location)
        except (CheckpointFileError, FileNotFoundError) as error:
            fallback = None if self._load_from is not None else newest_readable_checkpoint(self.work_dir,
                                                                                          exclude=[filename])
            if fallback is None:
                raise
            kind = type(error).__name__
            self.logger.warning(f'The latest checkpoint {filename} cannot be read ({kind}: '
                                f'truncated or corrupt?); resuming from {fallback}, the newest readable '
                                f'checkpoint in {self.work_dir}.')
            return super().resume(str(fallback), resume_optimizer, resume_param_scheduler, map_location)
