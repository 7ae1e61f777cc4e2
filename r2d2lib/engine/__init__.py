"""Engine: hooks, retrieval loops, a strict runner, checkpoint loading on torch >= 2.6."""
from . import hooks, runners  # noqa: F401
from .checkpoint import install_checkpoint_loader, load_from_local
from .runner import StrictRunner, load_config

install_checkpoint_loader()

__all__ = ['StrictRunner', 'install_checkpoint_loader', 'load_config', 'load_from_local']
