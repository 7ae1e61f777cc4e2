"""Engine: hooks, retrieval loops, a strict runner, mixed precision on any device, checkpoint loading
on torch >= 2.6."""
from . import hooks, runners  # noqa: F401
from .checkpoint import install_checkpoint_loader, load_from_local
from .optim_wrappers import MixedPrecisionOptimWrapper
from .runner import StrictRunner, load_config

install_checkpoint_loader()

__all__ = ['MixedPrecisionOptimWrapper', 'StrictRunner', 'install_checkpoint_loader', 'load_config',
           'load_from_local']
