"""Latent-space diffusion: diffusers' ``AutoencoderKL`` maps images to latents and back."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from r2d2lib.models.encoders.base import BaseEncoder
from r2d2lib.registry import ENCODERS


@ENCODERS.register_module()
class DiffusersAutoencoder(BaseEncoder):
    """The KL autoencoder of latent diffusion (Rombach et al. 2022, Sec. 3.1) as diffusers'
    ``AutoencoderKL`` (``self.model``): ``encode`` x -> z = scaling_factor * E(x) (mean of the
    posterior), ``decode`` z -> D(z / scaling_factor); images in [-1, 1].

    Args:
        config: ``AutoencoderKL`` fields (the architecture; ``None``: diffusers' defaults). Must match
            ``pretrained``'s config, which is loaded strictly.
        pretrained: a diffusers folder or Hub id (e.g. ``'stabilityai/sd-vae-ft-mse'``), loaded by
            :meth:`init_weights` (when training starts), never at build; safetensors weights only.
        subfolder: the folder of the VAE inside ``pretrained`` (``'vae'`` in a pipeline repo).
        frozen: freeze the autoencoder (default; latent diffusion trains the UNet only).

    Attributes:
        latent_channels, downsample_factor (2 ** (blocks - 1)), scaling_factor.
    """

    def __init__(self, config: Optional[dict] = None, pretrained: Optional[str] = None,
                 subfolder: Optional[str] = None, frozen: bool = True, init_cfg: Optional[dict] = None):
        super().__init__(frozen=frozen, init_cfg=init_cfg)
        from diffusers import AutoencoderKL
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in (config or {}).items()}
        self.model = AutoencoderKL(**fields)
        self.pretrained, self.subfolder = pretrained, subfolder
        self._finish_build()

    @property
    def latent_channels(self) -> int:
        return int(self.model.config.latent_channels)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.model.config.block_out_channels) - 1)

    @property
    def scaling_factor(self) -> float:
        return float(self.model.config.scaling_factor)

    def load_pretrained(self) -> None:
        """Copy ``pretrained``'s weights strictly (a key or shape that differs raises, naming it)."""
        if not self.pretrained:
            return
        from diffusers import AutoencoderKL

        from r2d2lib.io.checkpoint import load_state_dict_strict
        kwargs = dict(subfolder=self.subfolder) if self.subfolder else {}
        # safetensors only: a pickled .bin is never unpickled (the trust policy, docs/design.md)
        source = AutoencoderKL.from_pretrained(self.pretrained, use_safetensors=True, **kwargs)
        load_state_dict_strict(self.model, source.state_dict(), f'{self.pretrained} (AutoencoderKL)')

    def encode(self, images: Tensor) -> Tensor:
        """Images [B, 3, H, W] in [-1, 1] -> scaled latents [B, C, H/f, W/f] (posterior mean)."""
        return self.run_frozen(self._encode, images)

    def _encode(self, images: Tensor) -> Tensor:
        return self.model.encode(images).latent_dist.mode() * self.scaling_factor

    def decode(self, latents: Tensor) -> Tensor:
        """Scaled latents -> images in [-1, 1] (not clamped)."""
        with torch.no_grad():
            return self.model.decode(latents / self.scaling_factor).sample

    def forward(self, images: Tensor) -> Tensor:
        """:meth:`encode`."""
        return self.encode(images)
