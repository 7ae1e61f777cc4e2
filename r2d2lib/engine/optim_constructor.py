"""mmengine's optimizer constructor, without a log line per parameter."""
from typing import Dict, List, Optional

from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from torch import nn

from r2d2lib.engine.quiet_logging import infos_at_debug


class QuietOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``DefaultOptimWrapperConstructor`` with the same parameter groups and a one-line summary.

    mmengine logs one INFO line per parameter that ``paramwise_cfg`` touches (``paramwise_options --
    ...``) and one WARNING per frozen parameter (``... is skipped since its requires_grad=False``): for
    R2D2's momentum teacher, a frozen copy of both towers by design, that is one warning per tensor.
    Here a module whose parameters are all frozen is skipped whole (mmengine would skip each of them),
    the per-parameter options go at DEBUG, and one INFO line counts what was optimised and what was
    frozen. ``StrictRunner`` uses it when the config names no ``optim_wrapper.constructor``.
    """

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                   is_dcn_module: Optional[int] = None) -> None:
        tensors = list(module.parameters())
        if tensors and not any(p.requires_grad for p in tensors):
            self.frozen[prefix or '(model)'] = len(tensors)
            return
        super().add_params(params, module, prefix, is_dcn_module)

    def __call__(self, model: nn.Module) -> OptimWrapper:
        self.frozen: Dict[str, int] = {}
        logger = MMLogger.get_current_instance()
        with infos_at_debug(logger):
            optim_wrapper = super().__call__(model)
        groups, defaults = optim_wrapper.optimizer.param_groups, optim_wrapper.optimizer.defaults
        custom = sum(len(g['params']) for g in groups if any(
            g.get(k) != v for k, v in defaults.items() if isinstance(v, (int, float, str, tuple))))
        tensors = sum(len(g['params']) for g in groups)
        message = (f'optimizer: {tensors} parameter tensors, {custom} with paramwise options '
                   '(log_level DEBUG lists them)')
        if self.frozen:
            names = ', '.join(list(self.frozen)[:3]) + (', ...' if len(self.frozen) > 3 else '')
            message += f'; {sum(self.frozen.values())} frozen, not optimised ({names})'
        logger.info(message)
        return optim_wrapper
