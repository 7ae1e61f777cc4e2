"""Text-to-image diffusion conditioned on R2D2's Chinese text encoder (pixel or latent space)."""
from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModel
from PIL import Image
from torch import Tensor, nn

from r2d2lib.io.config_schema import plain_data
from r2d2lib.io.pretrained import load_pretrained
from r2d2lib.io.pretrained import push_to_hub as _push_to_hub
from r2d2lib.io.pretrained import save_pretrained as _save_pretrained
from r2d2lib.io.texts import check_texts
from r2d2lib.models.vlp.dual_encoder import constructor_config
from r2d2lib.registry import ENCODERS, FUSIONS, MODELS, OBJECTIVES

#: Sampler names -> diffusers scheduler classes (a fixed table: a config names a key, never a class).
SAMPLERS = {'dpm-solver': 'DPMSolverMultistepScheduler', 'ddim': 'DDIMScheduler', 'ddpm': 'DDPMScheduler'}
#: The forward process (DDPMScheduler fields): Nichol & Dhariwal's cosine schedule, epsilon prediction.
NOISE_SCHEDULE_DEFAULTS: Dict[str, Any] = dict(num_train_timesteps=1000, beta_schedule='squaredcos_cap_v2',
                                               prediction_type='epsilon', clip_sample=False)
#: Sampling defaults (:meth:`TextToImageDiffusion.generate`'s arguments); ``sampling=`` overrides them.
SAMPLING_DEFAULTS: Dict[str, Any] = dict(sampler='dpm-solver', steps=50, guidance=3.0, seed=0)
UNCONDITIONAL = ('learned', 'empty')
HALF = (0.5, 0.5, 0.5)


def check_sampling(options: Dict[str, Any]) -> Dict[str, Any]:
    """Refuse sampling settings that cannot be honoured, naming the argument."""
    unknown = sorted(set(options) - set(SAMPLING_DEFAULTS))
    if unknown:
        raise KeyError(f'unknown sampling options {unknown} (known: {sorted(SAMPLING_DEFAULTS)})')
    steps = options.get('steps', 1)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f'steps must be an integer >= 1, got {steps!r}')
    guidance = options.get('guidance', 1.0)
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not math.isfinite(guidance) \
            or guidance < 0:
        raise ValueError(f'guidance (the classifier-free guidance scale) must be a finite number >= 0, '
                         f'got {guidance!r}')
    sampler = options.get('sampler', 'dpm-solver')
    if sampler not in SAMPLERS:
        raise ValueError(f'sampler must be one of {sorted(SAMPLERS)}, got {sampler!r}')
    seed = options.get('seed')
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ValueError(f'seed must be an integer or None, got {seed!r}')
    return options


def to_pil(images: Tensor) -> List[Image.Image]:
    """Images in [-1, 1] [B, 3, H, W] -> PIL RGB images (rounded, clamped)."""
    return [Image.fromarray(array) for array in to_uint8(images).permute(0, 2, 3, 1).cpu().numpy()]


def to_uint8(images: Tensor) -> Tensor:
    """Images in [-1, 1] -> uint8 [0, 255] (rounded, clamped)."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@MODELS.register_module()
class TextToImageDiffusion(BaseModel):
    """Generates images from Chinese text: a denoising diffusion model (DDPM, Ho et al. 2020) whose
    UNet reads the hidden states of R2D2's text encoder through cross-attention (latent diffusion,
    Rombach et al. 2022), with classifier-free guidance (Ho & Salimans 2022).

    Forward process (:attr:`noise_schedule`, diffusers' ``DDPMScheduler``):
    ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` (DDPM Eq. 4); the UNet predicts ``eps`` (or ``v``).
    ``x_0`` is the image in [-1, 1] (pixel space) or ``vae.encode(image)`` (latent space). Sampling runs
    DPM-Solver++ (``'dpm-solver'``), DDIM (eta 0) or ancestral DDPM with the guided prediction
    ``eps_u + w (eps_c - eps_u)`` (Ho & Salimans Eq. 6 with w = 1 + their w), where ``eps_u`` is the
    prediction given the unconditional context: a learned [L, H] embedding (``'learned'``) or the text
    encoder's states of the empty text ``[CLS] [SEP]`` (``'empty'``). ``w = 1`` is the conditional
    prediction alone (one UNet pass), ``w = 0`` the unconditional one. Training (noise-prediction MSE,
    condition dropout) is the ``objective``'s (:class:`~r2d2lib.models.objectives.DiffusionObjective`).

    Args:
        text_encoder: ENCODERS config of the text tower (``HFBertEncoder``), frozen by default; its
            weights come from ``pretrained``.
        unet: FUSIONS config (``DiffusersUNet``); its size, channels and cross-attention width are
            filled in from the image size, the VAE and the text encoder.
        vae: ENCODERS config (``DiffusersAutoencoder``) for latent diffusion, or None (pixel space).
        noise_schedule: ``DDPMScheduler`` fields over :data:`NOISE_SCHEDULE_DEFAULTS`.
        unconditional: ``'learned'`` or ``'empty'`` (see above).
        sampling: defaults of :meth:`generate` over :data:`SAMPLING_DEFAULTS`.
        pretrained: init only (cleared on export): ``dict(source=FOLDER_OR_HUB_ID)`` (any r2d2lib model
            written by save_pretrained: a converted official checkpoint, a Hub export) or
            ``dict(source=CONFIG.py, checkpoint=CKPT)`` (a training run), whose ``text_encoder``
            initialises this one (strictly); loaded in :meth:`init_weights`.
        objective: OBJECTIVES config (``DiffusionObjective``), None for inference.
        data_preprocessor: MODELS config (``ImageTextDataPreprocessor``: the image side is the generated
            image's, its tokenizer the text encoder's; default mean/std 0.5 map pixels to [-1, 1]).
    """

    def __new__(cls, *args, **kwargs):
        model = super().__new__(cls)
        object.__setattr__(model, '_model_config', constructor_config(cls, args, kwargs))
        return model

    def __init__(self, text_encoder: dict, unet: dict, vae: Optional[dict] = None,
                 noise_schedule: Optional[dict] = None, unconditional: str = 'learned',
                 sampling: Optional[dict] = None, pretrained: Optional[dict] = None,
                 objective: Optional[dict] = None, data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='ImageTextDataPreprocessor', mean=HALF, std=HALF)
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.text_encoder = ENCODERS.build(text_encoder)
        self.vae = ENCODERS.build(vae) if vae is not None else None
        factor = self.vae.downsample_factor if self.vae is not None else 1
        channels = self.vae.latent_channels if self.vae is not None else 3
        self.image_size = int(self.data_preprocessor.image_size)
        if self.image_size % factor:
            raise ValueError(f'data_preprocessor.image_size {self.image_size} is not a multiple of '
                             f'the VAE\'s downsampling factor {factor}')
        self.unet = FUSIONS.build(dict(unet, sample_size=self.image_size // factor, in_channels=channels,
                                       out_channels=channels, cross_attention_dim=self.text_encoder.width))
        self.check_image_size(self.image_size, 'data_preprocessor.image_size')
        self.noise_schedule = {**NOISE_SCHEDULE_DEFAULTS, **(noise_schedule or {})}
        from diffusers import DDPMScheduler
        try:
            self.scheduler = DDPMScheduler(**self.noise_schedule)
        except (TypeError, ValueError, NotImplementedError) as error:
            raise ValueError(f'noise_schedule {self.noise_schedule} is not a DDPMScheduler config: {error}') \
                from error
        if self.noise_schedule['prediction_type'] not in ('epsilon', 'v_prediction'):
            raise ValueError("noise_schedule.prediction_type must be 'epsilon' or 'v_prediction', got "
                             f"{self.noise_schedule['prediction_type']!r}")
        if unconditional not in UNCONDITIONAL:
            raise ValueError(f'unconditional must be one of {UNCONDITIONAL}, got {unconditional!r}')
        self.unconditional = unconditional
        length, width = self.data_preprocessor.max_length, self.text_encoder.width
        if unconditional == 'learned':
            self.uncond_embedding = nn.Parameter(torch.randn(length, width) * 0.02)
        self.sampling = check_sampling({**SAMPLING_DEFAULTS, **(sampling or {})})
        if pretrained is not None and not (isinstance(pretrained, dict) and 'source' in pretrained):
            raise ValueError(f'pretrained must be dict(source=FOLDER_OR_HUB_ID) or dict(source=CONFIG, '
                             f'checkpoint=CKPT), got {pretrained!r}')
        self.pretrained = pretrained
        self.objective = (OBJECTIVES.build(objective, default_args=dict(model=self))
                          if objective is not None else None)

    # ----------------------------------------------------------------- weights
    def init_weights(self) -> None:
        """Initialise the parts (the VAE's pretrained weights), then copy a model's text encoder."""
        super().init_weights()
        if self.pretrained is None:
            return
        from r2d2lib.io.checkpoint import load_state_dict_strict
        source = self.pretrained['source']
        donor = self._donor()
        if not hasattr(donor, 'text_encoder'):
            raise TypeError(f'{source} is a {type(donor).__name__}, which has no text_encoder to condition '
                            'on')
        load_state_dict_strict(self.text_encoder, donor.text_encoder.state_dict(), f'{source} (text_encoder)')
        self.text_encoder._apply_frozen()

    def _donor(self) -> nn.Module:
        source, checkpoint = self.pretrained['source'], self.pretrained.get('checkpoint')
        if checkpoint is None:
            return load_pretrained(source, nn.Module)
        from mmengine.config import Config

        from r2d2lib.io.checkpoint import load_weights
        from r2d2lib.io.pretrained import architecture_config, build_architecture
        cfg = Config.fromfile(str(source))
        model = build_architecture(architecture_config(cfg.model.to_dict()), f'{source} (model)')
        load_weights(model, checkpoint)
        return model

    # ----------------------------------------------------------------- parts
    @property
    def tokenizer(self):
        """The text encoder's tokenizer (the preprocessor's)."""
        return self.data_preprocessor.tokenizer

    @property
    def downsample_factor(self) -> int:
        """How many pixels one UNet input position covers times the UNet's own downsampling."""
        return (self.vae.downsample_factor if self.vae is not None else 1) * self.unet.downsample_factor

    def check_image_size(self, image_size: Any, name: str = 'image_size') -> int:
        """``image_size`` if the UNet can take it (a positive multiple of :attr:`downsample_factor`)."""
        factor = self.downsample_factor
        if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < factor \
                or image_size % factor:
            raise ValueError(f'{name} must be a positive multiple of {factor} (the UNet halves the '
                             f'{"latent" if self.vae is not None else "image"} side '
                             f'{int(math.log2(self.unet.downsample_factor))} times'
                             f'{" after the VAE" if self.vae is not None else ""}), got {image_size!r}')
        return image_size

    def to_unit_range(self, images: Tensor) -> Tensor:
        """Preprocessor-normalised images -> [-1, 1] (undoes the preprocessor's mean/std)."""
        dp = self.data_preprocessor
        return (images.float() * dp.std + dp.mean) / 127.5 - 1.0

    def encode_images(self, images: Tensor) -> Tensor:
        """Preprocessor-normalised images -> x_0: pixels in [-1, 1], or scaled VAE latents."""
        unit = self.to_unit_range(images)
        return self.vae.encode(unit) if self.vae is not None else unit

    def decode(self, sample: Tensor) -> Tensor:
        """x_0 (pixels or latents) -> images in [-1, 1]."""
        return self.vae.decode(sample) if self.vae is not None else sample

    def text_context(self, input_ids: Tensor, attention_mask: Tensor) -> Tuple[Tensor, Tensor]:
        """The text encoder's hidden states [B, L, H] and mask [B, L]: the UNet's cross-attention input."""
        return self.text_encoder(input_ids, attention_mask), attention_mask

    def unconditional_context(self, batch: int) -> Tuple[Tensor, Tensor]:
        """The context of "no text" [batch, L, H] with its mask [batch, L] (see the class doc)."""
        length = self.data_preprocessor.max_length
        if self.unconditional == 'learned':
            hidden = self.uncond_embedding.unsqueeze(0).expand(batch, -1, -1)
            return hidden, torch.ones(batch, length, dtype=torch.long, device=hidden.device)
        tokenizer = self.tokenizer
        device = next(self.text_encoder.parameters()).device
        ids = torch.full((1, length), tokenizer.pad_token_id, dtype=torch.long, device=device)
        ids[0, 0], ids[0, 1] = tokenizer.cls_token_id, tokenizer.sep_token_id
        mask = (torch.arange(length, device=device) < 2).long().unsqueeze(0)
        hidden = self.text_encoder(ids, mask)
        return hidden.expand(batch, -1, -1), mask.expand(batch, -1)

    def guided_prediction(self, sample: Tensor, timestep: Tensor, context: Tensor, mask: Tensor,
                          guidance: float, uncond: Optional[Tuple[Tensor, Tensor]] = None) -> Tensor:
        """The UNet's prediction under classifier-free guidance ``u + w (c - u)`` (the class doc):
        w = 1 runs the conditional pass only, w = 0 the unconditional one, else both in one batch."""
        batch = sample.shape[0]
        timesteps = timestep.expand(batch) if timestep.dim() == 0 else timestep
        if guidance == 1:
            return self.unet(sample, timesteps, context, mask)
        uncond_context, uncond_mask = uncond if uncond is not None else self.unconditional_context(batch)
        if guidance == 0:
            return self.unet(sample, timesteps, uncond_context, uncond_mask)
        both = self.unet(torch.cat([sample, sample]), torch.cat([timesteps, timesteps]),
                         torch.cat([context, uncond_context.to(context.dtype)]),
                         torch.cat([mask, uncond_mask]))
        cond, unc = both.chunk(2)
        return unc + guidance * (cond - unc)

    def make_sampler(self, name: str, steps: int):
        """A fresh diffusers scheduler for ``name`` (:data:`SAMPLERS`) on this model's noise schedule.

        In pixel space the sampler clips its estimate of x_0 to the image range [-1, 1] at every step,
        as DDPM's sampler does (Ho et al. 2020, Sec. 3.3; diffusers' ``clip_sample`` for DDPM and DDIM,
        ``thresholding`` with ``sample_max_value=1`` for DPM-Solver++): at the noisiest steps the
        estimate divides by sqrt(abar_t), 1e-3 or less, and unclipped it throws the trajectory off.
        Latents have no fixed range and are not clipped.
        """
        import diffusers
        check_sampling(dict(sampler=name, steps=steps))
        clip = {}
        if self.vae is None:
            clip = (dict(thresholding=True, sample_max_value=1.0) if name == 'dpm-solver'
                    else dict(clip_sample=True, clip_sample_range=1.0))
        scheduler = getattr(diffusers, SAMPLERS[name]).from_config(self.scheduler.config, **clip)
        scheduler.set_timesteps(steps)
        return scheduler

    # ----------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, input_ids: Tensor, attention_mask: Tensor, steps: Optional[int] = None,
               guidance: Optional[float] = None, sampler: Optional[str] = None,
               generator: Optional[torch.Generator] = None, image_size: Optional[int] = None,
               progress: bool = False) -> Tensor:
        """Images in [-1, 1] [B, 3, S, S] for tokenised texts (see the class doc and :meth:`generate`).

        The initial noise is drawn on the CPU from ``generator`` (then moved), so a seed gives the
        same images on every device type up to floating-point differences.
        """
        opts = check_sampling({k: v for k, v in dict(steps=steps, guidance=guidance, sampler=sampler).items()
                               if v is not None})
        opts = {**self.sampling, **opts}
        size = self.check_image_size(self.image_size if image_size is None else image_size)
        side = size // (self.vae.downsample_factor if self.vae is not None else 1)
        batch = input_ids.shape[0]
        if batch == 0:
            raise ValueError('no texts to generate from (an empty batch)')
        context, mask = self.text_context(input_ids, attention_mask)
        uncond = self.unconditional_context(batch) if opts['guidance'] != 1 else None
        scheduler = self.make_sampler(opts['sampler'], opts['steps'])
        param = next(self.unet.parameters())
        sample = torch.randn((batch, self.unet.in_channels, side, side), generator=generator,
                             dtype=torch.float32).to(device=param.device, dtype=param.dtype)
        sample = sample * scheduler.init_noise_sigma
        from tqdm import tqdm
        for t in tqdm(scheduler.timesteps, desc='sample', disable=not progress, leave=False):
            model_input = scheduler.scale_model_input(sample, t)
            prediction = self.guided_prediction(model_input, t.to(param.device), context, mask,
                                                float(opts['guidance']), uncond)
            kwargs = dict(generator=generator) if opts['sampler'] == 'ddpm' else {}
            sample = scheduler.step(prediction, t, sample, return_dict=False, **kwargs)[0]
        return self.decode(sample).float()

    def generate(self, texts: Union[str, Sequence[str]], num_images: int = 1, steps: Optional[int] = None,
                 guidance: Optional[float] = None, sampler: Optional[str] = None, seed: Optional[int] = None,
                 image_size: Optional[int] = None, batch_size: int = 16, progress: bool = False,
                 generator: Optional[torch.Generator] = None) -> List[Image.Image]:
        """PIL images for ``texts``: ``num_images`` per text, in text order (text 0's first).

        Args:
            texts: one text or a list (each non-empty).
            num_images: images per text (>= 1).
            steps: sampling steps (>= 1). guidance: classifier-free guidance scale (>= 0; 1 is the
                conditional model alone). sampler: ``'dpm-solver'``, ``'ddim'`` or ``'ddpm'``.
                Defaults: the model's ``sampling``.
            seed: seeds a CPU generator for the whole call (same seed, same images); None: the
                ``sampling`` seed; ``generator`` instead of a seed.
            image_size: side in pixels (default: the training size); a multiple of
                :attr:`downsample_factor`.
            batch_size: texts x images sampled together.
            progress: a progress bar over the sampling steps of each batch.

        Raises:
            ValueError / TypeError: an empty text (naming its index), ``steps`` < 1, ``guidance`` < 0,
                an image size the UNet cannot take, ``num_images`` < 1.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise ValueError('texts is empty: give at least one text to generate from')
        check_texts(texts)
        if not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f'num_images must be an integer >= 1, got {num_images!r}')
        if batch_size < 1:
            raise ValueError(f'batch_size must be positive, got {batch_size}')
        opts = check_sampling({k: v for k, v in dict(steps=steps, guidance=guidance, sampler=sampler,
                                                      seed=seed).items() if v is not None})
        self.check_image_size(self.image_size if image_size is None else image_size)
        if generator is None:
            generator = torch.Generator().manual_seed(opts.get('seed', self.sampling['seed']))
        wanted = [text for text in texts for _ in range(num_images)]
        images: List[Image.Image] = []
        for start in range(0, len(wanted), batch_size):
            tokens = self.data_preprocessor.tokenize(wanted[start:start + batch_size])
            pixels = self.sample(tokens['input_ids'], tokens['attention_mask'], steps=opts.get('steps'),
                                 guidance=opts.get('guidance'), sampler=opts.get('sampler'),
                                 generator=generator, image_size=image_size, progress=progress)
            images.extend(to_pil(pixels))
        return images

    # ----------------------------------------------------------------- Hub
    @property
    def model_config(self) -> Dict[str, Any]:
        """The config this model was built from: ``type`` and the constructor arguments given."""
        return plain_data(self._model_config)

    def save_pretrained(self, save_directory: Union[str, os.PathLike], model_config: Optional[dict] = None,
                        model_card: Optional[dict] = None):
        """Export the architecture (see :func:`r2d2lib.io.pretrained.save_pretrained`)."""
        return _save_pretrained(self, save_directory, model_config=model_config, model_card=model_card)

    @classmethod
    def from_pretrained(cls, name_or_path: Union[str, os.PathLike], **kwargs):
        """A saved folder or Hub repo of a generator, loaded strictly, in eval mode."""
        return load_pretrained(name_or_path, cls, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs):
        """:meth:`save_pretrained` to a temporary folder and upload it."""
        return _push_to_hub(self, repo_id, **kwargs)

    # ----------------------------------------------------------------- mmengine API
    def forward(self, inputs: dict, data_samples: Optional[list] = None, mode: str = 'tensor'):
        """``'loss'`` -> the objective's losses; ``'predict'`` -> one dict per text (``text``,
        ``image_idx``, ``text_idx``, ``generated`` and ``real`` uint8 [3, S, S]) for
        :class:`~r2d2lib.evaluation.Text2ImageMetric`, sampled with the ``sampling`` settings and a
        generator seeded by the seed plus the batch's first text index; ``'tensor'`` -> the text
        context (hidden states [B, L, H])."""
        if mode == 'loss':
            if self.objective is None:
                raise RuntimeError('this TextToImageDiffusion has no training objective: set model.objective '
                                   "(dict(type='DiffusionObjective')) in the config")
            return self.objective(self, inputs)
        if mode == 'predict':
            text_ids = inputs['text_ids']
            generator = torch.Generator().manual_seed(int(self.sampling['seed']) + int(text_ids[0]))
            generated = to_uint8(self.sample(inputs['input_ids'], inputs['attention_mask'],
                                             generator=generator)).cpu()
            real = to_uint8(self.to_unit_range(inputs['images'])).cpu()
            samples = data_samples or [None] * len(generated)
            return [dict(text=_field(sample, 'text'), image_idx=int(i), text_idx=int(j), generated=g, real=r)
                    for sample, i, j, g, r in zip(samples, inputs['image_ids'].tolist(), text_ids.tolist(),
                                                  generated, real)]
        if mode == 'tensor':
            return self.text_context(inputs['input_ids'], inputs['attention_mask'])[0]
        raise ValueError(f'mode must be "loss", "predict" or "tensor", got {mode!r}')


def _field(sample: Any, name: str) -> Any:
    if sample is None:
        return None
    if isinstance(sample, dict):
        return sample.get(name)
    return sample.get(name) if hasattr(sample, 'get') else getattr(sample, name, None)

