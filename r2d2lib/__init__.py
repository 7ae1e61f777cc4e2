"""r2d2lib: Chinese vision-language pre-training (R2D2 and variants) in the OpenMMLab style.

Importing the package registers every component. Nothing is patched into mmengine.

    from r2d2lib import R2D2Model, DualEncoderModel, R2D2Inferencer, load_model, get_model, list_models
"""
from . import apis, datasets, engine, evaluation, models  # noqa: F401
from .apis import R2D2Inferencer, get_model, list_models, load_model
from .models import DualEncoderModel, R2D2Model
from .version import __version__

__all__ = ['DualEncoderModel', 'R2D2Inferencer', 'R2D2Model', '__version__', 'get_model', 'list_models',
           'load_model']
