"""Models: encoders, fusion, heads, losses and the assembled vision-language models."""
from . import data_preprocessors, distillers, encoders, fusion, heads, losses, queues, vlp  # noqa: F401
