"""Moves the momentum teacher after every optimizer step."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from r2d2lib.registry import HOOKS


def unwrap(model):
    """The model inside a DDP / FSDP wrapper."""
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class MomentumUpdateHook(Hook):
    """Call ``model.momentum_update()`` after each training iteration (Sec. 3.3).

    The model decides which students its teacher follows; the hook only times the
    update: after the optimizer step, once per iteration (with gradient
    accumulation, only on iterations where the optimizer stepped). Models without
    a momentum teacher (``model.teacher is None``) are left alone, so the default
    runtime can list the hook for every model; a model with a teacher and no hook
    is refused by ``StrictRunner``.
    """

    priority = 'ABOVE_NORMAL'

    def before_train(self, runner) -> None:
        model = unwrap(runner.model)
        self.active = getattr(model, 'teacher', None) is not None
        if self.active and not hasattr(model, 'momentum_update'):
            raise AttributeError(f'MomentumUpdateHook needs {type(model).__name__}.momentum_update()')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not getattr(self, 'active', True):
            return
        wrapper = runner.optim_wrapper
        if hasattr(wrapper, 'should_update') and not wrapper.should_update():
            return
        unwrap(runner.model).momentum_update()
