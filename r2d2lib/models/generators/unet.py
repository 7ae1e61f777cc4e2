"""The denoiser of text-to-image diffusion: diffusers' ``UNet2DConditionModel``, cross-attending to text."""
from __future__ import annotations

from typing import Optional

from mmengine.model import BaseModule
from torch import Tensor

from r2d2lib.registry import FUSIONS

#: A small UNet for 32-64 px images (the toy config's shape); ``config`` entries override these.
UNET_DEFAULTS = dict(block_out_channels=[64, 128], layers_per_block=1,
                     down_block_types=['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'],
                     up_block_types=['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
                     attention_head_dim=8, norm_num_groups=16)
#: Set by the generator from its other parts, never by the config.
FILLED_IN = ('sample_size', 'in_channels', 'out_channels', 'cross_attention_dim')


@FUSIONS.register_module()
class DiffusersUNet(BaseModule):
    """Noise predictor eps_theta(x_t, t, c) of DDPM (Ho et al. 2020, Eq. 14) as diffusers'
    ``UNet2DConditionModel`` (``self.model``): residual blocks with the timestep embedding, and
    transformer blocks whose cross-attention reads the text encoder's hidden states c [B, L, H]
    (Rombach et al. 2022, Eq. 3: Q from the image features, K and V from the text).

    Registered in ``FUSIONS``: it fuses the text into the image through cross-attention. Block types
    in ``config`` are names that diffusers looks up in its own fixed table (``get_down_block``), never
    imported by name, so a config.json cannot name a callable through them.

    Args:
        config: ``UNet2DConditionModel`` fields over :data:`UNET_DEFAULTS`; ``sample_size``,
            ``in_channels``, ``out_channels`` and ``cross_attention_dim`` are the generator's
            (:data:`FILLED_IN`: image or latent side and channels, text width).
        sample_size, in_channels, out_channels, cross_attention_dim: filled in by the generator.
        gradient_checkpointing: recompute each block in the backward pass.

    Attributes:
        downsample_factor: 2 ** (number of down blocks - 1); an input side must be a multiple of it.
    """

    def __init__(self, config: Optional[dict] = None, sample_size: int = 32, in_channels: int = 3,
                 out_channels: int = 3, cross_attention_dim: int = 768, gradient_checkpointing: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        from diffusers import UNet2DConditionModel
        given = dict(config or {})
        clash = sorted(set(given) & set(FILLED_IN))
        if clash:
            raise ValueError(f'unet.config sets {clash}, which the generator fills in from the image size, '
                             'the VAE and the text encoder: remove them')
        fields = {**UNET_DEFAULTS, **given}
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
        self.model = UNet2DConditionModel(sample_size=sample_size, in_channels=in_channels,
                                          out_channels=out_channels, cross_attention_dim=cross_attention_dim,
                                          **fields)
        if gradient_checkpointing:
            self.model.enable_gradient_checkpointing()
        self.downsample_factor = 2 ** (len(fields['down_block_types']) - 1)
        self.in_channels = in_channels

    def forward(self, sample: Tensor, timesteps: Tensor, context: Tensor,
                context_mask: Optional[Tensor] = None) -> Tensor:
        """Predicted noise (or v, per the schedule's prediction type) [B, C, h, w] of ``sample`` at
        ``timesteps`` [B] given text hidden states ``context`` [B, L, H] (``context_mask`` [B, L]:
        1 attend, 0 padding)."""
        return self.model(sample, timesteps, encoder_hidden_states=context,
                          encoder_attention_mask=context_mask, return_dict=False)[0]
