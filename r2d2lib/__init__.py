"""r2d2lib: Chinese vision-language pre-training (R2D2 and variants) in the OpenMMLab style.

    from r2d2lib import R2D2Model, DualEncoderModel, R2D2Inferencer, load_model, get_model, list_models

The sub-packages and these names load on first use (PEP 562), so ``import r2d2lib`` costs little more
than importing torch, and optional parts (faiss, onnx, fastapi, timm, mmpretrain) load only when a tool
uses them. Components register when their registry first builds or looks up a name: every registry lists
the modules that fill it (``r2d2lib/registry.py``, ``locations``). Nothing is patched into mmengine.
"""
import importlib
from typing import Any

from .version import __version__

SUBPACKAGES = ('apis', 'converters', 'datasets', 'deploy', 'engine', 'evaluation', 'io', 'models',
               'registry', 'visualization')
#: Top-level name -> the sub-package that defines it.
EXPORTS = {'DualEncoderModel': 'models', 'R2D2Model': 'models', 'R2D2Inferencer': 'apis', 'get_model': 'apis',
           'list_models': 'apis', 'list_pretrained': 'apis', 'load_model': 'apis'}

__all__ = ['__version__', *sorted(EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in SUBPACKAGES:
        return importlib.import_module(f'{__name__}.{name}')
    if name in EXPORTS:
        value = getattr(importlib.import_module(f'{__name__}.{EXPORTS[name]}'), name)
        globals()[name] = value
        return value
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list:
    return sorted(set(globals()) | set(SUBPACKAGES) | set(EXPORTS))
