"""The training objective of dual encoders: a contrastive loss, optionally with two-way distillation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from r2d2lib.models.utils import mask_tokens, normalize_fp32
from r2d2lib.registry import DISTILLERS, LOSSES, OBJECTIVES, QUEUES


@dataclass
class TrainFeatures:
    """Everything one training step computes once and several losses share."""

    images: Tensor
    image_ids: Tensor
    text_mask: Tensor
    image_tokens: Tensor
    image_embeds: Tensor
    text_hidden: Tensor
    text_embeds: Tensor
    teacher_image: Optional[Tensor] = None  # momentum teacher's embeddings of the full inputs
    teacher_text: Optional[Tensor] = None
    masked_ids: Optional[Tensor] = None  # text with [MASK] tokens (MLM, FgD student)
    mlm_labels: Optional[Tensor] = None  # original ids at masked positions, -100 elsewhere
    masked_hidden: Optional[Tensor] = None
    masked_embeds: Optional[Tensor] = None


@OBJECTIVES.register_module()
class ContrastiveObjective(nn.Module):
    """Train a dual encoder (R2D2-CLIP, PRD2, CLIP, BriVL) with a contrastive loss and optional distillation.

    One step (``objective(model, inputs)``, which ``model.forward(mode='loss')`` calls):

    1. the model encodes the batch: image tokens -> L2-normalised image embeddings, text hidden
       states -> text embeddings; the momentum teacher (``teacher``) its embeddings of the same
       complete inputs; with ``fgd`` (or MLM in :class:`R2D2Objective`) ``text_mask_ratio`` of the
       real text tokens become [MASK] and the masked text is encoded once;
    2. ``contrastive`` at the model's temperature (``model.temperature()``, clamped to its range
       first): ``GCPRLoss`` (Eq. 1-2), ``TargetDistillLoss`` (TgD, Eq. 4-5), CLIP's ``InfoNCELoss``
       or BriVL's ``MoCoLoss``; the last two kinds also read the teacher's embeddings and
       ``queue``, which then takes them;
    3. with ``fgd``, feature-guided distillation (Eq. 6-7, :class:`FeatureGuidedDistiller`), whose
       centres move after the step.

    The objective holds every piece of training-only state (teacher copies, queues, centres) as
    buffers, so checkpoints carry it and an export is the model without ``objective.*``. The teacher
    follows the trainable towers and both projections; ``MomentumUpdateHook`` calls
    :meth:`momentum_update` after each optimizer step. A frozen image encoder is not copied.

    Args:
        model: the model being trained (filled in by the model; read at build time, not kept).
        contrastive: LOSSES config; its ``name`` gives the logged key (``loss_gcpr``).
        teacher: DISTILLERS config of the momentum teacher, or None.
        queue: QUEUES config (``dim`` filled in) for losses that need one, or None.
        fgd: DISTILLERS config of :class:`FeatureGuidedDistiller` (``dim`` filled in), or None.
        text_mask_ratio: share of text tokens masked for the FgD student (and MLM).
        weights: multiplier per loss name (``gcpr``, ``fgd``, ...); Eq. 8 uses 1.
    """

    def __init__(self, model: nn.Module, contrastive: dict = dict(type='GCPRLoss'),
                 teacher: Optional[dict] = None, queue: Optional[dict] = None, fgd: Optional[dict] = None,
                 text_mask_ratio: float = 0.15, weights: Optional[Dict[str, float]] = None):
        super().__init__()
        embed_dim = model.vision_proj.out_features
        self.contrastive = LOSSES.build(contrastive)
        self.queue = QUEUES.build(dict(queue, dim=embed_dim)) if queue is not None else None
        self.fgd = DISTILLERS.build(dict(fgd, dim=embed_dim)) if fgd is not None else None
        self.teacher = DISTILLERS.build(teacher) if teacher is not None else None
        self.text_mask_ratio = text_mask_ratio
        self._check_distillation()
        if self.teacher is not None:
            self.teacher.track(self.momentum_students(model))
        self.weights = self._resolve_weights(weights)

    def _check_distillation(self) -> None:
        """Teacher, queue and losses must fit together; errors name the config key."""
        needs_queue = getattr(self.contrastive, 'requires_queue', False)
        loss_type = type(self.contrastive).__name__
        if needs_queue and (self.queue is None or self.teacher is None):
            raise ValueError(f'objective.contrastive {loss_type} needs objective.queue and objective.teacher')
        if self.queue is not None and not needs_queue:
            raise ValueError(f'objective.queue is set but objective.contrastive {loss_type} does not use one')
        if self.fgd is not None and self.teacher is None:
            raise ValueError('objective.fgd needs objective.teacher (the momentum teacher)')
        if self.teacher is not None and self.queue is None and self.fgd is None:
            raise ValueError('objective.teacher is set but no loss uses it (set objective.fgd or a '
                             'contrastive loss with a queue, or remove the teacher)')

    def loss_names(self) -> List[str]:
        """Names of the losses this objective computes, in logging order."""
        return [self.contrastive.name] + ([self.fgd.name] if self.fgd is not None else [])

    def _resolve_weights(self, weights: Optional[Dict[str, float]]) -> Dict[str, float]:
        """Weight of each loss term (1 unless the config says otherwise); unknown names are errors."""
        names = self.loss_names()
        unknown = set(weights or {}) - set(names)
        if unknown:
            raise KeyError(f'objective.weights has unknown keys {sorted(unknown)}; this objective computes '
                           f'{names}')
        return {name: float((weights or {}).get(name, 1.0)) for name in names}

    # ----------------------------------------------------------------- momentum teacher
    @staticmethod
    def momentum_students(model: nn.Module) -> Dict[str, nn.Module]:
        """The modules the momentum teacher follows: trainable towers and the projections."""
        students = dict(text_encoder=model.text_encoder, text_proj=model.text_proj,
                        vision_proj=model.vision_proj)
        if not model.image_encoder.frozen:
            students['image_encoder'] = model.image_encoder
        return students

    def momentum_update(self, model: nn.Module) -> None:
        """One EMA step of the teacher (called by ``MomentumUpdateHook`` after the optimizer step)."""
        if self.teacher is None:
            raise RuntimeError(f'{type(self).__name__} has no teacher; remove MomentumUpdateHook')
        self.teacher.update(self.momentum_students(model))

    def sync_teacher(self, model: nn.Module) -> None:
        """Make the teacher equal to the students (after the model's ``init_weights``)."""
        if self.teacher is not None:
            self.teacher.sync(self.momentum_students(model))

    @torch.no_grad()
    def teacher_features(self, images: Tensor, input_ids: Tensor, attention_mask: Tensor,
                         image_tokens: Tensor) -> Tuple[Tensor, Tensor]:
        """The teacher's L2-normalised image and text embeddings [n, D] of the complete inputs.

        ``image_tokens`` (the student's) are reused when the image encoder is frozen.
        """
        teacher = self.teacher.teachers
        if 'image_encoder' in teacher:
            image_tokens = teacher['image_encoder'](images)
        text_hidden = teacher['text_encoder'](input_ids, attention_mask)
        return (normalize_fp32(teacher['vision_proj'](image_tokens[:, 0].detach())),
                normalize_fp32(teacher['text_proj'](text_hidden[:, 0])))

    # ----------------------------------------------------------------- the step
    def forward(self, model: nn.Module, inputs: dict) -> Dict[str, Tensor]:
        """Every loss as ``loss_<name>`` (weighted), and the temperature.

        After the losses, the queue takes this step's teacher embeddings and the FgD centres move
        (the state the next step sees). After :meth:`compile_step` the step runs compiled.
        """
        if self.needs_masked_text:  # read the tokenizer here, in eager mode, once
            self._mask_vocabulary(model, inputs['input_ids'].device)
        step = self.__dict__.get('_compiled_step') or self.step
        return step(model, inputs)

    def step(self, model: nn.Module, inputs: dict) -> Dict[str, Tensor]:
        """The body of :meth:`forward`: encode once, every loss, then the queue and centre updates."""
        features = self.train_features(model, inputs)
        losses = self.compute_losses(model, features)
        self.update_state(features)
        outputs = {f'loss_{name}': self.weights[name] * value for name, value in losses.items()}
        outputs['temperature'] = model.temperature.tau.detach()
        return outputs

    def compile_step(self, **compile_kwargs) -> None:
        """Run :meth:`step` (forward and backward) through ``torch.compile``; the tokenizer stays eager.

        What mmengine's ``compile`` config option does through :class:`~r2d2lib.engine.StrictRunner`.
        ``compile_kwargs`` go to ``torch.compile``. The compiled function is not saved.
        """
        self.__dict__['_compiled_step'] = torch.compile(self.step, **compile_kwargs)

    @property
    def needs_masked_text(self) -> bool:
        """Whether a step encodes a masked copy of the text (the FgD student's input)."""
        return self.fgd is not None

    def _mask_vocabulary(self, model: nn.Module, device: torch.device) -> Tuple[int, Tensor]:
        """The tokenizer's [MASK] id and its special ids as a tensor on ``device``, built once.

        Cached (by :meth:`forward`, before the possibly compiled step) so that the step reads
        no tokenizer and copies nothing from the host.
        """
        cache = self.__dict__.setdefault('_mask_vocabulary_cache', {})
        if device not in cache:
            tokenizer = model.data_preprocessor.tokenizer
            if tokenizer.mask_token_id is None:
                raise ValueError(f'the tokenizer of data_preprocessor ({tokenizer.name_or_path!r}) has '
                                 'no [MASK] token, which MLM and FgD need')
            special = torch.tensor(sorted(set(tokenizer.all_special_ids)), device=device)
            cache[device] = (int(tokenizer.mask_token_id), special)
        return cache[device]

    def train_features(self, model: nn.Module, inputs: dict) -> TrainFeatures:
        """Encode a batch once: student features, teacher features, masked text."""
        images, input_ids, text_mask = inputs['images'], inputs['input_ids'], inputs['attention_mask']
        image_tokens, image_embeds = model.image_features(images)
        text_hidden, text_embeds = model.text_features(input_ids, text_mask)
        features = TrainFeatures(images=images, image_ids=inputs['image_ids'], text_mask=text_mask,
                                 image_tokens=image_tokens, image_embeds=image_embeds,
                                 text_hidden=text_hidden, text_embeds=text_embeds)
        if self.teacher is not None:
            features.teacher_image, features.teacher_text = self.teacher_features(
                images, input_ids, text_mask, image_tokens)
        if self.needs_masked_text:
            mask_id, special_ids = self._mask_vocabulary(model, input_ids.device)
            features.masked_ids, features.mlm_labels = mask_tokens(input_ids, text_mask, mask_id, special_ids,
                                                                   self.text_mask_ratio)
            features.masked_hidden, features.masked_embeds = model.text_features(features.masked_ids,
                                                                                 text_mask)
        return features

    def compute_losses(self, model: nn.Module, f: TrainFeatures) -> Dict[str, Tensor]:
        """Unweighted losses by name: the contrastive loss and, if configured, FgD."""
        tau = model.temperature()  # clamped to its range in place, as the official code each step
        loss = self.contrastive
        if loss.requires_queue:
            value = loss(f.image_embeds, f.text_embeds, f.image_ids, tau, f.teacher_image, f.teacher_text,
                         self.queue.slots())
        else:
            value = loss(f.image_embeds, f.text_embeds, f.image_ids, tau)
        losses = {loss.name: value}
        if self.fgd is not None:
            losses[self.fgd.name] = self.fgd(model, f.images, f.masked_embeds, f.teacher_image,
                                             f.teacher_text)
        return losses

    @torch.no_grad()
    def update_state(self, f: TrainFeatures) -> None:
        """After the step's losses: enqueue the teacher's embeddings, move the FgD centres."""
        if self.queue is not None:
            self.queue.enqueue(f.teacher_image, f.teacher_text, f.image_ids)
        if self.fgd is not None:
            self.fgd.update(f.teacher_image, f.teacher_text)
