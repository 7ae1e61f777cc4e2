"""User-facing functions: load models (one path, :func:`load_model`), the model zoo by name, and
:class:`R2D2Inferencer` (embed, score, search, classify)."""
from .inferencer import ClassScore, Gallery, R2D2Inferencer, SearchResult
from .loading import load_model
from .model_zoo import HUB_ORG, get_model, get_model_info, list_models, list_pretrained

__all__ = ['HUB_ORG', 'ClassScore', 'Gallery', 'R2D2Inferencer', 'SearchResult', 'get_model',
           'get_model_info', 'list_models', 'list_pretrained', 'load_model']
