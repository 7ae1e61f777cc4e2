"""Mixed-precision training on any device: mmengine's AmpOptimWrapper, extended to the CPU.

mmengine's ``AmpOptimWrapper`` refuses to build without a GPU (an assertion in its
``__init__``) and always creates a CUDA ``GradScaler``. :class:`MixedPrecisionOptimWrapper`
is the same wrapper (same arguments, same checkpoint keys, same ``optim_context``) that
also runs on the CPU, and that does not scale the loss in bfloat16, whose exponent range is
fp32's (a scaler there only adds a host sync per step to look for infs). The switch is
one line in a config::

    optim_wrapper = dict(type='MixedPrecisionOptimWrapper', dtype='bfloat16')  # or 'float16'

(the ``optimizer`` and ``paramwise_cfg`` of the base config are kept by the merge).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Optional, Union

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from torch import nn

from r2d2lib.registry import OPTIM_WRAPPERS

HALF_DTYPES = {'float16': torch.float16, 'bfloat16': torch.bfloat16}


def _parameter_device(optimizer: torch.optim.Optimizer) -> torch.device:
    """Device of the optimizer's first parameter (the model is on it when the wrapper is built)."""
    for group in optimizer.param_groups:
        for param in group['params']:
            return param.device
    raise ValueError('the optimizer of MixedPrecisionOptimWrapper has no parameters')


@OPTIM_WRAPPERS.register_module()
class MixedPrecisionOptimWrapper(AmpOptimWrapper):
    """``AmpOptimWrapper`` that also trains on the CPU; bfloat16 without loss scaling.

    Forward passes (the data preprocessor and ``model(..., mode='loss')``) run under
    ``torch.autocast(device_type, dtype)``; the backward pass and the optimizer step
    stay in fp32 (the parameters and their gradients are fp32 throughout). With
    ``float16`` the loss is scaled by a dynamic ``torch.amp.GradScaler`` of the
    parameters' device (CUDA or CPU), as in mmengine; with ``bfloat16`` the scaler is
    disabled (``scale`` returns the loss, ``step`` is the optimizer's). The model keeps
    its similarity logits, softmaxes and losses in fp32 under autocast (see
    :mod:`r2d2lib.models.utils.precision`).

    Args:
        dtype: ``'bfloat16'`` (default; supported by CPU and Ampere+ GPUs) or
            ``'float16'`` (GPU; on the CPU slow and unscaled ops may underflow).
        loss_scale: ``'dynamic'``, a float (static scale) or ``GradScaler`` kwargs; used
            with float16 only.
        **kwargs: ``optimizer``, ``clip_grad``, ``accumulative_counts`` of ``OptimWrapper``.
    """

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16',
                 loss_scale: Union[str, float, dict] = 'dynamic', **kwargs):
        OptimWrapper.__init__(self, **kwargs)  # skips AmpOptimWrapper's GPU-only assertion
        if isinstance(dtype, str):
            if dtype not in HALF_DTYPES:
                raise ValueError(f'optim_wrapper.dtype must be one of {sorted(HALF_DTYPES)}, '
                                 f'got {dtype!r}')
            dtype = HALF_DTYPES[dtype]
        if dtype not in HALF_DTYPES.values():
            raise ValueError(f'optim_wrapper.dtype must be torch.float16 or torch.bfloat16, got {dtype}')
        self.cast_dtype = dtype
        self.device_type = _parameter_device(self.optimizer).type
        self._scale_update_param: Optional[float] = None
        scaled = dtype == torch.float16
        if loss_scale == 'dynamic':
            scaler_kwargs = {}
        elif isinstance(loss_scale, (int, float)) and not isinstance(loss_scale, bool):
            self._scale_update_param = float(loss_scale)
            scaler_kwargs = dict(init_scale=float(loss_scale))
        elif isinstance(loss_scale, dict):
            scaler_kwargs = dict(loss_scale)
        else:
            raise TypeError(f'optim_wrapper.loss_scale must be "dynamic", a float or a dict, '
                            f'got {loss_scale!r}')
        self.loss_scaler = torch.amp.GradScaler(self.device_type, enabled=scaled, **scaler_kwargs)

    @contextmanager
    def optim_context(self, model: nn.Module):
        """Gradient-accumulation context of ``OptimWrapper`` plus autocast to ``dtype``."""
        with OptimWrapper.optim_context(self, model), \
                torch.autocast(device_type=self.device_type, dtype=self.cast_dtype):
            yield
