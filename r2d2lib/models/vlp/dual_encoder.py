"""Dual encoders: an image and a text tower ranked by a contrastive loss (R2D2-CLIP, PRD2, CLIP, BriVL).

:class:`DualEncoderModel` is also the base of :class:`~r2d2lib.models.vlp.R2D2Model`:
the towers, projections, contrastive loss, momentum teacher, feature queue and
feature-guided distillation live here once, and R2D2 adds its cross encoders.
"""
from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from mmengine.model import BaseModel
from PIL import Image
from torch import Tensor, nn

from r2d2lib.models.utils import mask_tokens, normalize_fp32, random_patch_keep
from r2d2lib.registry import DISTILLERS, ENCODERS, HEADS, LOSSES, MODELS, QUEUES


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


def _plain_copy(value: Any) -> Any:
    """Copy of a config value: mappings -> dict, sequences -> list copies; other objects as they are."""
    if isinstance(value, Mapping):
        return {key: _plain_copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_copy(item) for item in value]
    return value


def constructor_config(cls: type, args: tuple, kwargs: dict) -> Dict[str, Any]:
    """``dict(type=cls.__name__, **arguments given to cls.__init__)``, ``**kwargs`` flattened."""
    signature = inspect.signature(cls.__init__)
    bound = signature.bind_partial(None, *args, **kwargs).arguments  # copy and pickle pass no arguments
    config = {'type': cls.__name__}
    for name, value in list(bound.items())[1:]:
        if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            config.update(_plain_copy(value))
        else:
            config[name] = _plain_copy(value)
    return config


@MODELS.register_module()
class DualEncoderModel(BaseModel):
    """Image and text encoders with projections, trained by a contrastive loss and optional distillation.

    One training step (mode ``'loss'``):

    1. image tokens -> ``vision_proj`` of CLS -> L2-normalised image embeddings; text
       hidden states -> ``text_proj`` of [CLS] -> text embeddings;
    2. the contrastive loss (``contrastive_loss``): ``GCPRLoss`` (Eq. 1-2),
       ``TargetDistillLoss`` (GCPR with TgD, Eq. 4-5), CLIP's ``InfoNCELoss`` or
       BriVL's ``MoCoLoss``. The last two kinds read the momentum teacher's
       embeddings and the feature queue, which is then filled with them;
    3. with ``fgd_loss``, feature-guided distillation (Eq. 6-7): the teacher's
       embeddings of the complete inputs (centred by a :class:`FeatureCentre` per
       modality, updated after the step) against the student's embeddings of masked
       inputs: the text with ``text_mask_ratio`` of its tokens replaced by [MASK],
       and the image with ``patch_drop_ratio`` of its patch tokens dropped after the
       position embedding.

    The momentum teacher (``teacher``, a ``MomentumTeacher``) follows the trainable
    towers and both projections; ``MomentumUpdateHook`` moves it after each
    optimizer step. A frozen image encoder is not copied: its teacher is itself.

    Args:
        image_encoder: ENCODERS config returning [B, P+N, C_v] tokens (CLS first).
        text_encoder: ENCODERS config returning [B, L, H] hidden states.
        embed_dim: width of the retrieval embeddings.
        projection_head: HEADS config of ``vision_proj`` and ``text_proj``.
        contrastive_loss: LOSSES config; its ``name`` gives the logged key (``loss_gcpr``).
        teacher: DISTILLERS config of the momentum teacher, or None.
        queue: QUEUES config (``dim`` filled in) for losses that need one, or None.
        fgd_loss: LOSSES config of feature-guided distillation, or None.
        feature_centre: DISTILLERS config of the FgD centres (``dim`` filled in).
        text_mask_ratio: share of text tokens masked for the FgD student (and MLM).
        patch_drop_ratio: share of patch tokens the FgD image student does not see.
        loss_weights: multiplier per loss name (``gcpr``, ``fgd``, ...); Eq. 8 uses 1.
        data_preprocessor: MODELS config of the preprocessor (tokenizer, mean/std).

    Every instance records the arguments it was built with (:attr:`model_config`),
    which :meth:`save_pretrained` exports; :meth:`from_pretrained` rebuilds the model
    from a saved folder or a Hub repo (see :mod:`r2d2lib.apis.hub`).
    """

    #: attributes holding the losses this model computes, in logging order
    loss_attributes: Tuple[str, ...] = ('contrastive_loss', 'fgd_loss')

    def __new__(cls, *args, **kwargs):
        # Recorded here rather than in __init__ so that every subclass's own arguments are kept.
        model = super().__new__(cls)
        object.__setattr__(model, '_model_config', constructor_config(cls, args, kwargs))
        return model

    def __init__(self, image_encoder: dict, text_encoder: dict, embed_dim: int = 768,
                 projection_head: dict = dict(type='ProjectionHead'),
                 contrastive_loss: dict = dict(type='GCPRLoss'),
                 teacher: Optional[dict] = None, queue: Optional[dict] = None,
                 fgd_loss: Optional[dict] = None,
                 feature_centre: dict = dict(type='FeatureCentre', momentum=0.9),
                 text_mask_ratio: float = 0.15, patch_drop_ratio: float = 0.15,
                 loss_weights: Optional[Dict[str, float]] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='ImageTextDataPreprocessor')
        if isinstance(data_preprocessor, dict):  # built here: mmengine's BaseModel would look
            data_preprocessor = MODELS.build(data_preprocessor)  # in its own root registry
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.image_encoder = ENCODERS.build(image_encoder)
        self.text_encoder = ENCODERS.build(text_encoder)
        self.vision_proj = HEADS.build(dict(projection_head, in_features=self.image_encoder.width,
                                            out_features=embed_dim))
        self.text_proj = HEADS.build(dict(projection_head, in_features=self.text_encoder.width,
                                          out_features=embed_dim))
        self.contrastive_loss = LOSSES.build(contrastive_loss)
        self.queue = QUEUES.build(dict(queue, dim=embed_dim)) if queue is not None else None
        self.fgd_loss = LOSSES.build(fgd_loss) if fgd_loss is not None else None
        if self.fgd_loss is not None:
            self.image_centre = DISTILLERS.build(dict(feature_centre, dim=embed_dim))
            self.text_centre = DISTILLERS.build(dict(feature_centre, dim=embed_dim))
        self.teacher = DISTILLERS.build(teacher) if teacher is not None else None
        self.text_mask_ratio, self.patch_drop_ratio = text_mask_ratio, patch_drop_ratio
        self._check_distillation()
        self._check_preprocessor()
        if self.teacher is not None:
            self.teacher.track(self.momentum_students())
        self.loss_weights = self._resolve_loss_weights(loss_weights)

    # ----------------------------------------------------------------- build-time checks
    def _check_distillation(self) -> None:
        """Teacher, queue and losses must fit together; errors name the config key."""
        loss = self.contrastive_loss
        loss_type = type(loss).__name__
        if getattr(loss, 'requires_queue', False) and (self.queue is None or self.teacher is None):
            raise ValueError(f'contrastive_loss {loss_type} needs `queue` and `teacher` in the model '
                             'config')
        if self.queue is not None and not getattr(loss, 'requires_queue', False):
            raise ValueError(f'`queue` is set but contrastive_loss {loss_type} does not use one')
        if self.fgd_loss is not None and self.teacher is None:
            raise ValueError('fgd_loss needs `teacher` (the momentum teacher) in the model config')
        if self.teacher is not None and not self._uses_teacher():
            raise ValueError('`teacher` is set but no loss uses it (set fgd_loss or a contrastive '
                             'loss with a queue, or remove teacher)')

    def _uses_teacher(self) -> bool:
        return self.queue is not None or self.fgd_loss is not None

    def _check_preprocessor(self) -> None:
        text_positions = getattr(self.text_encoder, 'max_positions', None)
        if self.data_preprocessor.image_size != self.image_encoder.image_size:
            raise ValueError(f'data_preprocessor.image_size is {self.data_preprocessor.image_size} '
                             f'but must be {self.image_encoder.image_size} to match the encoders')
        if text_positions is not None and self.data_preprocessor.max_length > text_positions:
            raise ValueError(f'data_preprocessor.max_length {self.data_preprocessor.max_length} '
                             f'exceeds the text encoder\'s {text_positions} positions')

    def _resolve_loss_weights(self, weights: Optional[Dict[str, float]]) -> Dict[str, float]:
        """Weights of the loss terms (1 unless the config says otherwise); unknown names are errors."""
        names = [getattr(self, attr).name for attr in self.loss_attributes
                 if getattr(self, attr, None) is not None]
        unknown = set(weights or {}) - set(names)
        if unknown:
            raise KeyError(f'loss_weights has unknown keys {sorted(unknown)}; this model computes '
                           f'{names}')
        return {name: float((weights or {}).get(name, 1.0)) for name in names}

    # ----------------------------------------------------------------- momentum teacher
    def momentum_students(self) -> Dict[str, nn.Module]:
        """The modules the momentum teacher follows: trainable towers and the projections."""
        students = dict(text_encoder=self.text_encoder, text_proj=self.text_proj,
                        vision_proj=self.vision_proj)
        if not self.image_encoder.frozen:
            students['image_encoder'] = self.image_encoder
        return students

    def momentum_update(self) -> None:
        """One EMA step of the teacher (called by ``MomentumUpdateHook`` after the optimizer step)."""
        if self.teacher is None:
            raise RuntimeError(f'{type(self).__name__} has no `teacher`; remove MomentumUpdateHook')
        self.teacher.update(self.momentum_students())

    def init_weights(self) -> None:
        """Initialise (and load pretrained towers), then make the teacher equal to the students."""
        super().init_weights()
        if self.teacher is not None:
            self.teacher.sync(self.momentum_students())

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

    # ----------------------------------------------------------------- inference API
    def preprocess(self, images: List[Image.Image]) -> Tensor:
        """List of PIL images -> pixel tensor (resize, bicubic, CLIP mean/std)."""
        return self.data_preprocessor.preprocess(images)

    def tokenize(self, texts: Union[str, List[str]]) -> dict:
        """Texts -> ``dict(input_ids, attention_mask)``, padded to ``max_length`` tokens."""
        return self.data_preprocessor.tokenize(texts)

    def image_features(self, pixel_values: Tensor,
                       patch_keep: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Image tokens [B, P+N, C_v] and their L2-normalised fp32 embeddings [B, D]."""
        if patch_keep is None:
            tokens = self.image_encoder(pixel_values)
        else:
            tokens = self.image_encoder(pixel_values, patch_keep=patch_keep)
        return tokens, normalize_fp32(self.vision_proj(tokens[:, 0]))

    def text_features(self, input_ids: Tensor, attention_mask: Tensor) -> Tuple[Tensor, Tensor]:
        """Text hidden states [B, L, H] and their L2-normalised fp32 embeddings [B, D]."""
        hidden = self.text_encoder(input_ids, attention_mask)
        return hidden, normalize_fp32(self.text_proj(hidden[:, 0]))

    def encode_image(self, pixel_values: Tensor) -> Tensor:
        """L2-normalised image embeddings [B, D] for retrieval."""
        return self.image_features(pixel_values)[1]

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """L2-normalised text embeddings [B, D] for retrieval."""
        return self.text_features(input_ids, attention_mask)[1]

    # ----------------------------------------------------------------- Hugging Face Hub
    @property
    def model_config(self) -> Dict[str, Any]:
        """The config this model was built from: ``type`` and the constructor arguments given."""
        return _plain_copy(self._model_config)

    def save_pretrained(self, save_directory: Union[str, os.PathLike], model_config: Optional[dict] = None,
                        model_card: Optional[dict] = None):
        """Export for inference: config.json, model.safetensors, tokenizer, README.md (see
        :func:`r2d2lib.apis.hub.save_pretrained`)."""
        from r2d2lib.apis.hub import save_pretrained
        return save_pretrained(self, save_directory, model_config=model_config, model_card=model_card)

    @classmethod
    def from_pretrained(cls, name_or_path: Union[str, os.PathLike], revision: Optional[str] = None,
                        cache_dir: Optional[Union[str, os.PathLike]] = None,
                        local_files_only: Optional[bool] = None, token: Optional[Union[str, bool]] = None,
                        device: Optional[Union[str, torch.device]] = None,
                        dtype: Optional[Union[str, torch.dtype]] = None):
        """A saved folder or Hub repo of this class (or a subclass), loaded strictly, in eval mode
        (see :func:`r2d2lib.apis.hub.from_pretrained`)."""
        from r2d2lib.apis.hub import from_pretrained
        return from_pretrained(name_or_path, revision=revision, cache_dir=cache_dir,
                               local_files_only=local_files_only, token=token, device=device,
                               dtype=dtype, model_class=cls)

    def push_to_hub(self, repo_id: str, **kwargs):
        """:meth:`save_pretrained` to a temporary folder and upload it (see
        :func:`r2d2lib.apis.hub.push_to_hub` for the arguments)."""
        from r2d2lib.apis.hub import push_to_hub
        return push_to_hub(self, repo_id, **kwargs)

    # ----------------------------------------------------------------- mmengine API
    def forward(self, inputs: dict, data_samples: Optional[list] = None, mode: str = 'tensor'):
        """mmengine entry: ``'loss'`` -> dict of losses, ``'predict'`` -> evaluation features,
        ``'tensor'`` -> ``dict(image_embeds, text_embeds)``."""
        if mode == 'loss':
            return self.loss(inputs)
        if mode == 'predict':
            return self.predict(inputs)
        if mode == 'tensor':
            return dict(image_embeds=self.encode_image(inputs['images']),
                        text_embeds=self.encode_text(inputs['input_ids'], inputs['attention_mask']))
        raise ValueError(f'mode must be "loss", "predict" or "tensor", got {mode!r}')

    def predict(self, inputs: dict) -> Dict[str, Tensor]:
        """Features the retrieval loop needs for a batch of pairs (embeddings, tokens, ids)."""
        image_tokens, image_embeds = self.image_features(inputs['images'])
        text_hidden, text_embeds = self.text_features(inputs['input_ids'], inputs['attention_mask'])
        return dict(image_embeds=image_embeds, text_embeds=text_embeds, image_tokens=image_tokens,
                    text_hidden=text_hidden, text_mask=inputs['attention_mask'],
                    image_idx=inputs['image_ids'], text_idx=inputs['text_ids'])

    def loss(self, inputs: dict) -> Dict[str, Tensor]:
        """Every configured loss as ``loss_<name>`` (weighted), and the temperature.

        After the losses, the queue takes this step's teacher embeddings and the FgD
        centres move (the state the next step sees). After :meth:`compile_training` the
        step runs compiled.
        """
        if self.needs_masked_text:  # read the tokenizer here, in eager mode, once
            self._mask_vocabulary(inputs['input_ids'].device)
        step = self.__dict__.get('_compiled_training_step') or self.training_step_losses
        return step(inputs)

    def training_step_losses(self, inputs: dict) -> Dict[str, Tensor]:
        """The body of :meth:`loss`: encode once, every loss, then the queue and centre updates."""
        features = self.train_features(inputs)
        losses = self.compute_losses(features)
        self.update_state(features)
        outputs = {f'loss_{name}': self.loss_weights[name] * value for name, value in losses.items()}
        outputs['temperature'] = self.contrastive_loss.temperature.detach()
        return outputs

    def compile_training(self, **compile_kwargs) -> None:
        """Run the training step's forward (:meth:`training_step_losses`) through ``torch.compile``.

        What mmengine's ``compile`` config option does through :class:`~r2d2lib.engine.StrictRunner`:
        the data preprocessor (tokenizer) and the optimizer stay eager, the forward and
        its backward are compiled. ``compile_kwargs`` go to ``torch.compile`` (``backend``,
        ``mode``, ``dynamic``, ...). The compiled function is not saved with the model.
        """
        self.__dict__['_compiled_training_step'] = torch.compile(self.training_step_losses,
                                                                 **compile_kwargs)

    # ----------------------------------------------------------------- training step
    @property
    def needs_masked_text(self) -> bool:
        """Whether a step encodes a masked copy of the text (the FgD student's input)."""
        return self.fgd_loss is not None

    def mask_text(self, input_ids: Tensor, attention_mask: Tensor) -> Tuple[Tensor, Tensor]:
        """``(masked_ids, labels)``: ``text_mask_ratio`` of the real tokens -> [MASK] (Sec. 3.2)."""
        mask_id, special_ids = self._mask_vocabulary(input_ids.device)
        return mask_tokens(input_ids, attention_mask, mask_id, special_ids, self.text_mask_ratio)

    def _mask_vocabulary(self, device: torch.device) -> Tuple[int, Tensor]:
        """The tokenizer's [MASK] id and its special ids as a tensor on ``device``, built once.

        Cached (by :meth:`loss`, before the possibly compiled step) so that the step reads
        no tokenizer and copies nothing from the host.
        """
        cache = self.__dict__.setdefault('_mask_vocabulary_cache', {})
        if device not in cache:
            tokenizer = self.data_preprocessor.tokenizer
            if tokenizer.mask_token_id is None:
                raise ValueError(f'the tokenizer of data_preprocessor ({tokenizer.name_or_path!r}) has '
                                 'no [MASK] token, which MLM and FgD need')
            special = torch.tensor(sorted(set(tokenizer.all_special_ids)), device=device)
            cache[device] = (int(tokenizer.mask_token_id), special)
        return cache[device]

    def train_features(self, inputs: dict) -> TrainFeatures:
        """Encode a batch once: student features, teacher features, masked text."""
        images, input_ids, text_mask = inputs['images'], inputs['input_ids'], inputs['attention_mask']
        image_tokens, image_embeds = self.image_features(images)
        text_hidden, text_embeds = self.text_features(input_ids, text_mask)
        features = TrainFeatures(images=images, image_ids=inputs['image_ids'], text_mask=text_mask,
                                 image_tokens=image_tokens, image_embeds=image_embeds,
                                 text_hidden=text_hidden, text_embeds=text_embeds)
        if self.teacher is not None:
            features.teacher_image, features.teacher_text = self.teacher_features(
                images, input_ids, text_mask, image_tokens)
        if self.needs_masked_text:
            features.masked_ids, features.mlm_labels = self.mask_text(input_ids, text_mask)
            features.masked_hidden, features.masked_embeds = self.text_features(features.masked_ids,
                                                                                text_mask)
        return features

    def compute_losses(self, f: TrainFeatures) -> Dict[str, Tensor]:
        """Unweighted losses by name: the contrastive loss and, if configured, FgD."""
        loss = self.contrastive_loss
        if loss.requires_queue:
            value = loss(f.image_embeds, f.text_embeds, f.image_ids, f.teacher_image, f.teacher_text,
                         self.queue.slots())
        else:
            value = loss(f.image_embeds, f.text_embeds, f.image_ids)
        losses = {loss.name: value}
        if self.fgd_loss is not None:
            losses[self.fgd_loss.name] = self.feature_distill_loss(f)
        return losses

    def feature_distill_loss(self, f: TrainFeatures) -> Tensor:
        """L_FGD (Eq. 7): teacher on complete inputs, student on masked text and dropped patches."""
        patch_keep = random_patch_keep(f.images.shape[0], self.image_encoder.num_patches,
                                       self.patch_drop_ratio, device=f.images.device)
        student_image = self.image_features(f.images, patch_keep=patch_keep)[1]
        image_term = self.fgd_loss(student_image, f.teacher_image, self.image_centre.centre)
        text_term = self.fgd_loss(f.masked_embeds, f.teacher_text, self.text_centre.centre)
        return (image_term + text_term) / 2

    @torch.no_grad()
    def update_state(self, f: TrainFeatures) -> None:
        """After the step's losses: enqueue the teacher's embeddings, move the FgD centres."""
        if self.queue is not None:
            self.queue.enqueue(f.teacher_image, f.teacher_text, f.image_ids)
        if self.fgd_loss is not None:
            self.image_centre.update(f.teacher_image)
            self.text_centre.update(f.teacher_text)
