"""Data preprocessors: image normalisation and tokenisation into forward's inputs."""
from .image_text import CLIP_MEAN, CLIP_STD, ImageTextDataPreprocessor, build_tokenizer

__all__ = ['CLIP_MEAN', 'CLIP_STD', 'ImageTextDataPreprocessor', 'build_tokenizer']
