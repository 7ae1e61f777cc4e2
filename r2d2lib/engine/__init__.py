"""Engine: training hooks, the retrieval evaluation loops, checkpoint loading on torch >= 2.6."""
from . import hooks, runners  # noqa: F401
from .checkpoint import install_checkpoint_loader, load_from_local

install_checkpoint_loader()

__all__ = ['install_checkpoint_loader', 'load_from_local']
