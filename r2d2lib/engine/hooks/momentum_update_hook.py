"""Moves the momentum teacher after every optimizer step."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from r2d2lib.registry import HOOKS


@HOOKS.register_module()
class MomentumUpdateHook(Hook):
    """Call ``model.momentum_update()`` after each training iteration (Sec. 3.3).

    The model decides which students its teacher follows; the hook only times the
    update: after the optimizer step, once per iteration (with gradient
    accumulation, only on iterations where the optimizer stepped).
    """

    priority = 'ABOVE_NORMAL'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(model, 'momentum_update'):
            raise AttributeError(f'MomentumUpdateHook needs {type(model).__name__}.momentum_update()')
        wrapper = runner.optim_wrapper
        if hasattr(wrapper, 'should_update') and not wrapper.should_update():
            return
        model.momentum_update()
