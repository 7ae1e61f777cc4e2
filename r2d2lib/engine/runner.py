"""mmengine's Runner with strict checkpoint loading, and the config the tools hand it."""
import os.path as osp
from typing import Optional

from mmengine.config import Config
from mmengine.runner import Runner


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
    """An mmengine Runner whose ``load_from`` / ``--resume`` loads fail on missing or extra weights.

    mmengine loads checkpoints with ``strict=False`` and only logs the keys it
    could not match, so a wrong file evaluates or trains a half-random model.
    Here every load is strict: the error names the keys. Training also refuses a
    model with a momentum teacher but no ``MomentumUpdateHook``. ``tools/train.py``
    and ``tools/test.py`` use this runner.
    """

    def train(self):
        """Check that a model with a momentum teacher has the hook that moves it, then train."""
        model = self.model.module if hasattr(self.model, 'module') else self.model
        has_hook = any(type(hook).__name__ == 'MomentumUpdateHook' for hook in self.hooks)
        if getattr(model, 'teacher', None) is not None and not has_hook:
            raise ValueError('the model has a momentum teacher but custom_hooks has no '
                             'MomentumUpdateHook: the teacher would never move')
        return super().train()

    def _maybe_compile(self, target: str) -> None:
        compile_cfg = self.cfg.get('compile', None)
        model = self.model.module if hasattr(self.model, 'module') else self.model
        if target != 'train_step' or not compile_cfg or not hasattr(model, 'compile_training'):
            return super()._maybe_compile(target)
        if not isinstance(compile_cfg, (bool, dict)):
            raise TypeError(f'config key `compile` must be a bool or a dict of torch.compile '
                            f'arguments, got {compile_cfg!r}')
        model.compile_training(**(compile_cfg if isinstance(compile_cfg, dict) else {}))
        self.logger.info(f'Compiled the training step of {type(model).__name__} '
                         f'(torch.compile {compile_cfg}); the first iterations are slow.')

    def load_checkpoint(self, filename: str, map_location='cpu', strict: bool = True,
                        revise_keys=((r'^module.', ''),)):
        return super().load_checkpoint(filename, map_location=map_location, strict=strict,
                                       revise_keys=list(revise_keys))
