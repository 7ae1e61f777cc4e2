"""Text-to-image generation conditioned on R2D2's text encoder (diffusers' UNet, schedulers and VAE).

diffusers is imported when a part is built, not when this package is imported."""
from .autoencoder import DiffusersAutoencoder
from .diffusion import (
    NOISE_SCHEDULE_DEFAULTS,
    SAMPLERS,
    SAMPLING_DEFAULTS,
    TextToImageDiffusion,
    check_sampling,
)
from .unet import DiffusersUNet

__all__ = ['DiffusersAutoencoder', 'DiffusersUNet', 'NOISE_SCHEDULE_DEFAULTS', 'SAMPLERS',
           'SAMPLING_DEFAULTS', 'TextToImageDiffusion', 'check_sampling']
