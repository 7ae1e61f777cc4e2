"""mmengine's Runner with strict checkpoint loading under r2d2lib's trust policy, the process group's
backend chosen from the machine, and the config the tools hand it."""
import copy
import datetime
import logging
import os.path as osp
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel, is_model_wrapper
from mmengine.optim import OptimWrapper
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint_to_model

from r2d2lib.engine import fsdp
from r2d2lib.engine.hooks.momentum_update_hook import has_teacher
from r2d2lib.engine.optim_constructor import QuietOptimWrapperConstructor
from r2d2lib.engine.quiet_logging import infos_at_debug, quiet_mmengine_deprecations
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

    FSDP (docs/distributed.md): with the config key ``fsdp`` (options:
    :func:`r2d2lib.engine.fsdp.fsdp_options`; ``tools/train.py --fsdp``) and a distributed launcher,
    training shards the model with torch's FSDP2 instead of DDP: ``train()`` initialises the weights
    on the full model, shards it (:func:`~r2d2lib.engine.fsdp.shard_model`, rank 0's weights on every
    rank) and only then builds the optimizer. Checkpoints are full state dicts gathered from every
    rank and written by rank 0 in the format of a single-process run (model and optimizer); loading
    one cuts it into the shards. The evaluation loops run on unsharded parameters. ``test()`` never
    shards (the model is not wrapped).

    Logs (r2d2lib/engine/quiet_logging.py): at the default ``log_level='INFO'`` mmengine's set-up
    (environment, config, hook order) and the optimizer's per-parameter options go at DEBUG, and one
    line says where the config is; ``log_level='DEBUG'`` (the tools' ``--verbose``) shows them all.
    """

    def __init__(self, *args, **kwargs):
        try:
            super().__init__(*args, **kwargs)
        finally:  # entered in build_logger: the set-up's INFO lines go at DEBUG
            if getattr(self, '_logger_quiet', None) is not None:
                self._logger_quiet.__exit__(None, None, None)
        self.logger.info(f'work dir {self.work_dir}, seed {self.seed}; the config is saved in the work dir, '
                         'the environment, config and hook order are logged at log_level DEBUG (--verbose)')

    def build_logger(self, log_level='INFO', log_file=None, **kwargs):
        """mmengine's logger; until the end of ``__init__`` its INFO records go at DEBUG."""
        logger = super().build_logger(log_level=log_level, log_file=log_file, **kwargs)
        quiet_mmengine_deprecations(logger)
        self._logger_quiet = infos_at_debug(logger)
        self._logger_quiet.__enter__()
        return logger

    def _init_model_weights(self) -> None:
        """mmengine's, without its per-parameter initialisation dump unless the log file is at DEBUG.

        mmengine's ``BaseModule.init_weights`` writes one entry per parameter ("The value is the same
        before and after calling `init_weights`") straight into the log file's stream, whatever the
        level, so below DEBUG the file handlers sit out the call (its warnings still reach the console).
        """
        if getattr(self, '_weights_initialised', False):  # done before FSDP sharded the model
            return
        files = [handler for handler in self.logger.handlers
                 if isinstance(handler, logging.FileHandler) and handler.level > logging.DEBUG]
        for handler in files:
            self.logger.removeHandler(handler)
        try:
            with infos_at_debug(self.logger):
                super()._init_model_weights()
        finally:
            for handler in files:
                self.logger.addHandler(handler)

    def build_optim_wrapper(self, optim_wrapper):
        """mmengine's, with :class:`QuietOptimWrapperConstructor` unless the config names a constructor."""
        if isinstance(optim_wrapper, dict) and 'constructor' not in optim_wrapper:
            optim_wrapper = dict(copy.deepcopy(optim_wrapper), constructor=QuietOptimWrapperConstructor)
        return super().build_optim_wrapper(optim_wrapper)

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
        """mmengine's wrapping, except on CPUs: DDP without ``device_ids`` (mmengine passes a GPU's); with
        ``fsdp`` no wrapper: ``train()`` shards the model."""
        if self.cfg.get('fsdp') is not None:
            fsdp.fsdp_options(self.cfg.fsdp)  # unknown keys fail here, before any work
            if self.distributed:
                return self._prepare_fsdp(model_wrapper_cfg, model)
        if (not self.distributed or torch.cuda.is_available() or model_wrapper_cfg is not None
                or is_model_wrapper(model)):
            return super().wrap_model(model_wrapper_cfg, model)
        return MMDistributedDataParallel(
            module=model, broadcast_buffers=False,
            find_unused_parameters=self.cfg.get('find_unused_parameters', False))

    def _prepare_fsdp(self, model_wrapper_cfg: Optional[dict], model: torch.nn.Module) -> torch.nn.Module:
        """The model unwrapped: ``train()`` shards it (``fully_shard`` moves it to the device)."""
        if model_wrapper_cfg is not None:
            raise ValueError('config keys fsdp and model_wrapper_cfg are exclusive: fsdp replaces the '
                             'DDP wrapper')
        if torch.cuda.is_available():  # the preprocessor puts each batch on the device of the shards
            model.data_preprocessor.to(torch.device('cuda', torch.cuda.current_device()))
        return model

    @property
    def fsdp_sharded(self) -> bool:
        return fsdp.is_sharded(self.model)

    def train(self):
        """Check that a model with a momentum teacher has the hook that moves it, shard it under ``fsdp``,
        then train."""
        model = self.model.module if is_model_wrapper(self.model) else self.model
        has_hook = any(type(hook).__name__ == 'MomentumUpdateHook' for hook in self.hooks)
        if has_teacher(model) and not has_hook:
            raise ValueError('the model has a momentum teacher but custom_hooks has no '
                             'MomentumUpdateHook: the teacher would never move')
        if self.cfg.get('fsdp') is not None and not self.distributed:
            raise ValueError('config key fsdp needs a distributed launcher (tools/dist_train.sh, '
                             '--launcher pytorch); set fsdp=None to train in one process')
        if self.cfg.get('fsdp') is not None and not self.fsdp_sharded:
            self._init_model_weights()  # on the full model: pretrained towers load, the teacher syncs
            self._weights_initialised = True
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
            self.model = fsdp.shard_model(self.model, self.cfg.fsdp, device)
            self.logger.info(fsdp.shard_summary(self.model))
            self.register_hook(fsdp.UnshardForEvalHook())
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
        if self.fsdp_sharded:  # the full tensors cut into this rank's shards
            checkpoint = self._shard_checkpoint(checkpoint, revise_keys)
        checkpoint = _load_checkpoint_to_model(model, checkpoint, strict, revise_keys=list(revise_keys))
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    def _shard_checkpoint(self, checkpoint: dict, revise_keys) -> dict:
        checkpoint = dict(checkpoint)
        key = 'state_dict' if 'state_dict' in checkpoint else None
        weights = fsdp.revised(checkpoint[key] if key else checkpoint, revise_keys)
        weights = fsdp.sharded_state(self.model, weights)
        if key is None:
            return weights
        checkpoint[key] = weights
        if 'optimizer' in checkpoint and isinstance(self.optim_wrapper, OptimWrapper):
            checkpoint['optimizer'] = fsdp.shard_optimizer_state(self.optim_wrapper.optimizer,
                                                                 checkpoint['optimizer'])
        return checkpoint

    def save_checkpoint(self, out_dir: str, filename: str, file_client_args: Optional[dict] = None,
                        save_optimizer: bool = True, save_param_scheduler: bool = True,
                        meta: Optional[dict] = None, by_epoch: bool = True,
                        backend_args: Optional[dict] = None):
        """mmengine's (rank 0 writes); a sharded model's and optimizer's full state dicts are gathered on
        every rank first (a collective), so the file is what a single-process run writes."""
        kwargs = dict(file_client_args=file_client_args, save_optimizer=save_optimizer,
                      save_param_scheduler=save_param_scheduler, meta=meta, by_epoch=by_epoch,
                      backend_args=backend_args)
        if not self.fsdp_sharded:
            return super().save_checkpoint(out_dir, filename, **kwargs)
        weights = fsdp.full_state(self.model.state_dict())
        optimizer = fsdp.full_state(self.optim_wrapper.state_dict()) if save_optimizer else None
        # mmengine's save_checkpoint reads both through state_dict(): shadowed for the call
        self.model.state_dict = lambda *args, **kw: weights
        self.optim_wrapper.state_dict = lambda: optimizer
        try:
            return super().save_checkpoint(out_dir, filename, **kwargs)
        finally:
            del self.model.state_dict, self.optim_wrapper.state_dict

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
