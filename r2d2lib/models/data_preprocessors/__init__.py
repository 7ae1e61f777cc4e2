"""Data preprocessors: image normalisation and tokenisation into forward's inputs."""
from . import matching  # noqa: F401  (registers the matching preprocessor)
from .image_text import CLIP_MEAN, CLIP_STD, ImageTextDataPreprocessor, build_tokenizer

__all__ = ['CLIP_MEAN', 'CLIP_STD', 'ImageTextDataPreprocessor', 'build_tokenizer']
