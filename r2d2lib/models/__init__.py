"""Models: encoders, fusion, heads, losses, the assembled vision-language models and their objectives."""
from . import data_preprocessors, distillers, encoders, fusion, heads, losses, objectives, queues, vlp  # noqa: F401
from .vlp import DualEncoderModel, R2D2Model

__all__ = ['DualEncoderModel', 'R2D2Model']
