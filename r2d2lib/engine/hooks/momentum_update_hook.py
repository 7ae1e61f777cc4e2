"""Moves the momentum teacher after every optimizer step."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from r2d2lib.registry import HOOKS


def unwrap(model):
    """The model inside a DDP / FSDP wrapper."""
    return model.module if is_model_wrapper(model) else model


def has_teacher(model) -> bool:
    """Whether ``model`` trains with a momentum teacher (its objective has one)."""
    return getattr(getattr(model, 'objective', None), 'teacher', None) is not None


@HOOKS.register_module()
class MomentumUpdateHook(Hook):
    """Call ``model.objective.momentum_update(model)`` after each training iteration (Sec. 3.3).

    The objective decides which students its teacher follows; the hook only times the
    update: after the optimizer step, once per iteration (with gradient
    accumulation, only on iterations where the optimizer stepped). Models whose objective
    has no momentum teacher are left alone, so the default runtime can list the hook for
    every model; a model with a teacher and no hook is refused by ``StrictRunner``.
    """

    priority = 'ABOVE_NORMAL'

    def before_train(self, runner) -> None:
        self.active = has_teacher(unwrap(runner.model))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not getattr(self, 'active', True):
            return
        wrapper = runner.optim_wrapper
        if hasattr(wrapper, 'should_update') and not wrapper.should_update():
            return
        model = unwrap(runner.model)
        model.objective.momentum_update(model)
