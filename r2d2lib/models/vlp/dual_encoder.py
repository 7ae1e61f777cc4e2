"""Dual encoders: an image and a text tower with projections into one embedding space (R2D2-CLIP, PRD2,
CLIP, BriVL).

:class:`DualEncoderModel` is also the base of :class:`~r2d2lib.models.vlp.R2D2Model`, which adds the
cross encoders. A model holds what inference uses (towers, projections, the contrastive temperature);
how it is trained is its ``objective`` (:mod:`r2d2lib.models.objectives`), built only for training.
"""
from __future__ import annotations

import inspect
import os
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from mmengine.model import BaseModel
from PIL import Image
from torch import Tensor

from r2d2lib.io.config_schema import plain_data
from r2d2lib.io.pretrained import load_pretrained
from r2d2lib.io.pretrained import push_to_hub as _push_to_hub
from r2d2lib.io.pretrained import save_pretrained as _save_pretrained
from r2d2lib.models.utils import normalize_fp32
from r2d2lib.registry import ENCODERS, HEADS, MODELS, OBJECTIVES


def constructor_config(cls: type, args: tuple, kwargs: dict) -> Dict[str, Any]:
    """``dict(type=cls.__name__, **arguments given to cls.__init__)``, ``**kwargs`` flattened."""
    signature = inspect.signature(cls.__init__)
    bound = signature.bind_partial(None, *args, **kwargs).arguments  # copy and pickle pass no arguments
    config = {'type': cls.__name__}
    for name, value in list(bound.items())[1:]:
        if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            config.update(plain_data(value))
        else:
            config[name] = plain_data(value)
    return config


@MODELS.register_module()
class DualEncoderModel(BaseModel):
    """Image and text encoders with projections into one L2-normalised embedding space.

    Inference: image tokens -> ``vision_proj`` of CLS -> image embedding; text hidden states ->
    ``text_proj`` of [CLS] -> text embedding; similarity / ``temperature.tau`` ranks (Eq. 1).
    Training (mode ``'loss'``) is the ``objective``'s: ``objective(model, inputs)``, e.g.
    ``dict(type='ContrastiveObjective', contrastive=dict(type='GCPRLoss'))``; see
    :mod:`r2d2lib.models.objectives`.

    Args:
        image_encoder: ENCODERS config returning [B, P+N, C_v] tokens (CLS first).
        text_encoder: ENCODERS config returning [B, L, H] hidden states.
        embed_dim: width of the retrieval embeddings.
        projection_head: HEADS config of ``vision_proj`` and ``text_proj``.
        temperature: HEADS config of the contrastive temperature tau (``Temperature``: tau itself,
            R2D2; ``LogitScale``: CLIP's log(1 / tau)).
        objective: OBJECTIVES config of the training objective (the model is filled in), or None
            for a model that only runs inference (what ``from_pretrained`` builds).
        data_preprocessor: MODELS config of the preprocessor (tokenizer, mean/std).

    Every instance records the arguments it was built with (:attr:`model_config`);
    :meth:`save_pretrained` exports them without ``objective`` and :meth:`from_pretrained` rebuilds
    the architecture from a saved folder or a Hub repo (see :mod:`r2d2lib.io.pretrained`).
    """

    def __new__(cls, *args, **kwargs):
        # Recorded here rather than in __init__ so that every subclass's own arguments are kept.
        model = super().__new__(cls)
        object.__setattr__(model, '_model_config', constructor_config(cls, args, kwargs))
        return model

    def __init__(self, image_encoder: dict, text_encoder: dict, embed_dim: int = 768,
                 projection_head: dict = dict(type='ProjectionHead'),
                 temperature: dict = dict(type='Temperature'),
                 objective: Optional[dict] = None,
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
        self.temperature = HEADS.build(temperature)
        self._check_preprocessor()
        self.build_architecture()
        self.objective = (OBJECTIVES.build(objective, default_args=dict(model=self))
                          if objective is not None else None)

    def build_architecture(self) -> None:
        """Build the parts subclasses add (before the objective, which may read them)."""

    def _check_preprocessor(self) -> None:
        text_positions = getattr(self.text_encoder, 'max_positions', None)
        if self.data_preprocessor.image_size != self.image_encoder.image_size:
            raise ValueError(f'data_preprocessor.image_size is {self.data_preprocessor.image_size} '
                             f'but must be {self.image_encoder.image_size} to match the encoders')
        if text_positions is not None and self.data_preprocessor.max_length > text_positions:
            raise ValueError(f'data_preprocessor.max_length {self.data_preprocessor.max_length} '
                             f'exceeds the text encoder\'s {text_positions} positions')

    def init_weights(self) -> None:
        """Initialise (and load pretrained towers), then set the objective's teacher to its students."""
        super().init_weights()
        if self.objective is not None:
            self.objective.sync_teacher(self)

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
        return plain_data(self._model_config)

    def save_pretrained(self, save_directory: Union[str, os.PathLike], model_config: Optional[dict] = None,
                        model_card: Optional[dict] = None):
        """Export the architecture: config.json, model.safetensors, tokenizer, README.md (see
        :func:`r2d2lib.io.pretrained.save_pretrained`)."""
        return _save_pretrained(self, save_directory, model_config=model_config, model_card=model_card)

    @classmethod
    def from_pretrained(cls, name_or_path: Union[str, os.PathLike], revision: Optional[str] = None,
                        cache_dir: Optional[Union[str, os.PathLike]] = None,
                        local_files_only: Optional[bool] = None, token: Optional[Union[str, bool]] = None,
                        device: Optional[Union[str, torch.device]] = None,
                        dtype: Optional[Union[str, torch.dtype]] = None):
        """A saved folder or Hub repo of this class (or a subclass), loaded strictly, in eval mode.

        The folder-and-Hub branch of :func:`r2d2lib.load_model` (both call
        :func:`r2d2lib.io.pretrained.load_pretrained`); config.json is checked against the closed
        schema before anything is built.
        """
        return load_pretrained(name_or_path, cls, revision=revision, cache_dir=cache_dir,
                               local_files_only=local_files_only, token=token, device=device, dtype=dtype)

    def push_to_hub(self, repo_id: str, **kwargs):
        """:meth:`save_pretrained` to a temporary folder and upload it (see
        :func:`r2d2lib.io.pretrained.push_to_hub` for the arguments)."""
        return _push_to_hub(self, repo_id, **kwargs)

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
        """The objective's weighted losses (``loss_<name>``) and logged values of one training step."""
        if self.objective is None:
            raise RuntimeError(f'this {type(self).__name__} has no training objective: set model.objective '
                               'in the config (e.g. dict(type=\'R2D2Objective\', ...)); a model loaded with '
                               'from_pretrained / load_model is built for inference')
        return self.objective(self, inputs)

    def compile_training(self, **compile_kwargs) -> None:
        """Run the objective's training step (forward and backward) through ``torch.compile``.

        What mmengine's ``compile`` config option does through :class:`~r2d2lib.engine.StrictRunner`:
        the data preprocessor (tokenizer) and the optimizer stay eager. ``compile_kwargs`` go to
        ``torch.compile`` (``backend``, ``mode``, ``dynamic``, ...).
        """
        self.objective.compile_step(**compile_kwargs)
