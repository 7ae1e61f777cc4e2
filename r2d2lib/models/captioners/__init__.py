"""Captioners: R2D2's image encoder with a text decoder (transformers generation), their objective."""
from .captioner import GENERATION_DEFAULTS, ImageCaptioner
from .objective import CaptionLMLoss, CaptionObjective
from .text_decoder import HFBertDecoder

__all__ = ['CaptionLMLoss', 'CaptionObjective', 'GENERATION_DEFAULTS', 'HFBertDecoder', 'ImageCaptioner']
