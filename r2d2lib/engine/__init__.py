"""Engine: hooks, retrieval loops, a strict runner (checkpoints through r2d2lib.io.checkpoint), mixed
precision on any device."""
from . import hooks, runners  # noqa: F401
from .optim_wrappers import MixedPrecisionOptimWrapper
from .runner import StrictRunner, load_config

__all__ = ['MixedPrecisionOptimWrapper', 'StrictRunner', 'load_config']
