"""Encoders: image towers (CLIP ViT, timm ViT) and text towers (BERT) as token-sequence encoders."""
from .base import BaseEncoder
from .hf_bert import HFBertEncoder
from .hf_clip_vision import HFCLIPVisionEncoder
from .timm_vit import TimmViTEncoder

__all__ = ['BaseEncoder', 'HFBertEncoder', 'HFCLIPVisionEncoder', 'TimmViTEncoder']
