"""r2d2lib: Chinese vision-language pre-training (R2D2 and variants) in the OpenMMLab style."""
from .version import __version__

__all__ = ['__version__']
