"""Training a text-to-image diffusion model: noise-prediction MSE with condition dropout."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from r2d2lib.registry import LOSSES, OBJECTIVES


@LOSSES.register_module()
class NoisePredictionLoss(nn.Module):
    """The simplified DDPM objective (Ho et al. 2020, Eq. 14): ``mean ||target - prediction||^2`` over
    every element, where the target is the noise eps (``prediction_type='epsilon'``) or the velocity
    ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0`` (``'v_prediction'``, Salimans & Ho 2022).

    Args:
        name: the loss's key is ``loss_<name>``.
    """

    def __init__(self, name: str = 'diffusion'):
        super().__init__()
        self.name = name

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(prediction.float(), target.float())


@OBJECTIVES.register_module()
class DiffusionObjective(nn.Module):
    """A :class:`~r2d2lib.models.generators.TextToImageDiffusion` trained to denoise its images given
    their texts, with classifier-free guidance's condition dropout (Ho & Salimans 2022, Alg. 1).

    One step: x_0 = the model's image (pixels in [-1, 1] or VAE latents); t ~ U{0..T-1}; eps ~ N(0, I);
    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (DDPM Eq. 4, the model's ``DDPMScheduler.add_noise``);
    each text's context is replaced by the model's unconditional context with probability
    ``condition_dropout``; ``loss_<loss.name>`` = weight x MSE(UNet(x_t, t, context), target).

    Args:
        model: the generator (filled in; not kept).
        loss: LOSSES config (``NoisePredictionLoss``).
        condition_dropout: probability in [0, 1) that a text is replaced by "no text" (0.1 in
            Ho & Salimans; 0 trains a conditional model that cannot be guided).
        weights: ``dict(<loss.name>=...)``.
    """

    def __init__(self, model: nn.Module, loss: dict = dict(type='NoisePredictionLoss'),
                 condition_dropout: float = 0.1, weights: Optional[Dict[str, float]] = None):
        super().__init__()
        if not 0.0 <= condition_dropout < 1.0:
            raise ValueError(f'condition_dropout must be in [0, 1), got {condition_dropout}')
        self.loss = LOSSES.build(loss)
        self.condition_dropout = float(condition_dropout)
        unknown = set(weights or {}) - {self.loss.name}
        if unknown:
            raise KeyError(f'objective.weights has unknown keys {sorted(unknown)}; this objective computes '
                           f"['{self.loss.name}']")
        self.weights = {self.loss.name: float((weights or {}).get(self.loss.name, 1.0))}

    def sync_teacher(self, model: nn.Module) -> None:
        """No teacher: nothing to do."""

    def drop_conditions(self, model: nn.Module, context: Tensor, mask: Tensor,
                        generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor, Tensor]:
        """``(context, mask, dropped)``: rows where ``dropped`` [B] (each with probability
        ``condition_dropout``) hold the model's unconditional context and mask instead."""
        batch = context.shape[0]
        dropped = torch.rand(batch, generator=generator).to(context.device) < self.condition_dropout
        if not bool(dropped.any()):
            return context, mask, dropped
        uncond, uncond_mask = model.unconditional_context(batch)
        context = torch.where(dropped[:, None, None], uncond.to(context.dtype), context)
        mask = torch.where(dropped[:, None], uncond_mask.to(mask.dtype), mask)
        return context, mask, dropped

    def target(self, model: nn.Module, sample: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """eps, or v for a v-prediction schedule."""
        if model.noise_schedule['prediction_type'] == 'v_prediction':
            return model.scheduler.get_velocity(sample, noise, timesteps)
        return noise

    def forward(self, model: nn.Module, inputs: dict, noise: Optional[Tensor] = None,
                timesteps: Optional[Tensor] = None,
                generator: Optional[torch.Generator] = None) -> Dict[str, Tensor]:
        """``dict(loss_diffusion=...)`` of a batch of ``images``, ``input_ids``, ``attention_mask``
        (``noise``, ``timesteps`` and the dropout ``generator`` may be given, e.g. by a test)."""
        sample = model.encode_images(inputs['images'])
        context, mask = model.text_context(inputs['input_ids'], inputs['attention_mask'])
        if self.condition_dropout > 0:
            context, mask, _ = self.drop_conditions(model, context, mask, generator)
        batch = sample.shape[0]
        if noise is None:
            noise = torch.randn_like(sample)
        if timesteps is None:
            timesteps = torch.randint(0, model.scheduler.config.num_train_timesteps, (batch,),
                                      device=sample.device)
        noisy = model.scheduler.add_noise(sample, noise, timesteps)
        prediction = model.unet(noisy, timesteps, context, mask)
        loss = self.loss(prediction, self.target(model, sample, noise, timesteps))
        return {f'loss_{self.loss.name}': self.weights[self.loss.name] * loss}
