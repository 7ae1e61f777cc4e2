"""User-facing functions: save, load and publish models in the Hugging Face Hub layout, and use them
(:class:`R2D2Inferencer`: embed, score, search, classify)."""
from .hub import PretrainedConfigError, from_pretrained, load_local_checkpoint, push_to_hub, save_pretrained
from .inferencer import ClassScore, Gallery, R2D2Inferencer, SearchResult
from .model_card import render_model_card
from .model_zoo import HUB_ORG, get_model, get_model_info, list_models

__all__ = ['HUB_ORG', 'ClassScore', 'Gallery', 'PretrainedConfigError', 'R2D2Inferencer', 'SearchResult',
           'from_pretrained', 'get_model', 'get_model_info', 'list_models', 'load_local_checkpoint',
           'push_to_hub', 'render_model_card', 'save_pretrained']
