"""Encoders: image towers (CLIP ViT, timm ViT) and text towers (BERT) as token-sequence encoders."""
from .base import BaseEncoder, PretrainedLoadError, check_state_dict_keys, load_state_dict_strict
from .hf_bert import HFBertEncoder
from .hf_clip_vision import HFCLIPVisionEncoder
from .timm_vit import TimmViTEncoder

__all__ = [
    'BaseEncoder', 'HFBertEncoder', 'HFCLIPVisionEncoder', 'PretrainedLoadError',
    'TimmViTEncoder', 'check_state_dict_keys', 'load_state_dict_strict'
]
