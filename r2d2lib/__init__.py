"""r2d2lib: Chinese vision-language pre-training (R2D2 and variants) in the OpenMMLab style.

Importing the package registers every component and installs the checkpoint loader
that lets mmengine resume on torch >= 2.6 (see ``r2d2lib.engine.checkpoint``).
"""
from . import apis, datasets, engine, evaluation, models  # noqa: F401
from .apis.model_zoo import get_model, list_models
from .version import __version__

__all__ = ['__version__', 'get_model', 'list_models']
