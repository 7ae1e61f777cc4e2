"""Image captioning with R2D2's image encoder: image tokens -> (projection) -> a BERT decoder."""
from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Optional, Union

import torch
from mmengine.model import BaseModel
from PIL import Image
from torch import Tensor, nn

from r2d2lib.io.config_schema import plain_data
from r2d2lib.io.pretrained import load_pretrained
from r2d2lib.io.pretrained import push_to_hub as _push_to_hub
from r2d2lib.io.pretrained import save_pretrained as _save_pretrained
from r2d2lib.models.vlp.dual_encoder import constructor_config
from r2d2lib.registry import ENCODERS, FUSIONS, HEADS, MODELS, OBJECTIVES

#: Decoding defaults (:meth:`ImageCaptioner.generate`'s arguments); ``generation=`` overrides them.
GENERATION_DEFAULTS: Dict[str, Any] = dict(max_length=None, min_length=1, num_beams=1, do_sample=False,
                                           top_p=0.9, temperature=1.0, repetition_penalty=1.0)
# Whitespace the BERT tokenizer puts between CJK characters (a caption is written without it).
_SPACE_NEXT_TO_WIDE = re.compile(r'(?<=[^\x00-\x7f])\s+|\s+(?=[^\x00-\x7f])')


def check_generation(options: Dict[str, Any]) -> Dict[str, Any]:
    """Refuse decoding settings generation cannot honour, naming them."""
    unknown = sorted(set(options) - set(GENERATION_DEFAULTS))
    if unknown:
        raise KeyError(f'unknown generation options {unknown} (known: {sorted(GENERATION_DEFAULTS)})')
    max_length, min_length = options.get('max_length'), options.get('min_length', 1)
    if max_length is not None and (not isinstance(max_length, int) or max_length < 2):
        raise ValueError(f'max_length must be an integer >= 2 ([CLS] and one token), got {max_length!r}')
    too_long = max_length is not None and isinstance(min_length, int) and min_length > max_length
    if not isinstance(min_length, int) or min_length < 0 or too_long:
        raise ValueError(f'min_length must be an integer in [0, max_length], got {min_length!r}')
    beams = options.get('num_beams', 1)
    if not isinstance(beams, int) or isinstance(beams, bool) or beams < 1:
        raise ValueError(f'num_beams (beams) must be an integer >= 1, got {beams!r}')
    if not 0.0 < float(options.get('top_p', 0.9)) <= 1.0:
        raise ValueError(f'top_p must be in (0, 1], got {options.get("top_p")!r}')
    if float(options.get('temperature', 1.0)) <= 0 or float(options.get('repetition_penalty', 1.0)) <= 0:
        raise ValueError('temperature and repetition_penalty must be positive')
    return options


@MODELS.register_module()
class ImageCaptioner(BaseModel):
    """Captions images: R2D2's image encoder, an optional projection of its tokens to the decoder's
    width, and a text decoder with causal self-attention and cross-attention over the image tokens.

    ``image_tokens = image_proj(image_encoder(pixels))``; ``decoder(ids, image_tokens)`` gives the
    next-token logits; :meth:`generate` decodes with transformers' ``GenerationMixin`` (greedy, beam
    search, nucleus sampling) over the whole batch with a key/value cache, starting from [CLS] and
    stopping at [SEP]. Training is the ``objective``'s (``CaptionObjective``: LM loss with label
    smoothing). Which parts are frozen is each part's ``frozen`` switch.

    Args:
        image_encoder: ENCODERS config returning [B, N, C_v] tokens (an R2D2 image tower).
        text_decoder: FUSIONS config of the decoder (``HFBertDecoder``).
        image_proj: HEADS config (``ProjectionHead``) mapping C_v to the decoder's width, or None when
            the widths are equal (then the tokens go in as they are).
        generation: decoding defaults for ``predict`` and :meth:`generate` (keys of
            :data:`GENERATION_DEFAULTS`; ``max_length`` None: the preprocessor's).
        pretrained: init only (cleared on export): ``dict(source=FOLDER_OR_HUB_ID, image_encoder=True,
            text_decoder=True)``, an r2d2lib model (written by save_pretrained) whose ``image_encoder``
            initialises this one and whose ``text_encoder`` initialises the decoder as BLIP does
            (:meth:`HFBertDecoder.load_text_encoder_state`); loaded in :meth:`init_weights`.
        objective: OBJECTIVES config (``CaptionObjective``), None for inference.
        data_preprocessor: MODELS config (``ImageTextDataPreprocessor``; its tokenizer is the decoder's).
    """

    def __new__(cls, *args, **kwargs):
        model = super().__new__(cls)
        object.__setattr__(model, '_model_config', constructor_config(cls, args, kwargs))
        return model

    def __init__(self, image_encoder: dict, text_decoder: dict, image_proj: Optional[dict] = None,
                 generation: Optional[dict] = None, pretrained: Optional[dict] = None,
                 objective: Optional[dict] = None, data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='ImageTextDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.image_encoder = ENCODERS.build(image_encoder)
        self.text_decoder = FUSIONS.build(text_decoder)
        image_width, width = self.image_encoder.width, self.text_decoder.width
        if image_proj is None:
            if image_width != width:
                raise ValueError(f'image_proj is None but the image tokens are {image_width} wide and the '
                                 f'text_decoder {width}: give image_proj=dict(type=\'ProjectionHead\')')
            self.image_proj = nn.Identity()
        else:
            self.image_proj = HEADS.build(dict(image_proj, in_features=image_width, out_features=width))
        self.generation = check_generation({**GENERATION_DEFAULTS, **(generation or {})})
        if self.data_preprocessor.image_size != self.image_encoder.image_size:
            raise ValueError(f'data_preprocessor.image_size is {self.data_preprocessor.image_size} but must '
                             f'be {self.image_encoder.image_size} to match the image_encoder')
        if self.data_preprocessor.max_length > self.text_decoder.max_positions:
            raise ValueError(f'data_preprocessor.max_length {self.data_preprocessor.max_length} exceeds the '
                             f'text_decoder\'s {self.text_decoder.max_positions} positions')
        if pretrained is not None and not (isinstance(pretrained, dict) and 'source' in pretrained):
            raise ValueError(f'pretrained must be dict(source=..., image_encoder=True, text_decoder=True), '
                             f'got {pretrained!r}')
        self.pretrained = pretrained
        self.objective = (OBJECTIVES.build(objective, default_args=dict(model=self))
                          if objective is not None else None)

    # ----------------------------------------------------------------- weights
    def init_weights(self) -> None:
        """Initialise the parts (their own pretrained weights), then copy an r2d2lib model's towers."""
        super().init_weights()
        if self.pretrained is None:
            return
        source = self.pretrained['source']
        donor = load_pretrained(source, nn.Module)
        if self.pretrained.get('image_encoder', True):
            from r2d2lib.io.checkpoint import load_state_dict_strict
            load_state_dict_strict(self.image_encoder, donor.image_encoder.state_dict(),
                                   f'{source} (image_encoder)')
            self.image_encoder._apply_frozen()
        if self.pretrained.get('text_decoder', True):
            self.text_decoder.load_text_encoder_state(donor.text_encoder.model.state_dict(),
                                                      f'{source} (text_encoder)')

    # ----------------------------------------------------------------- inference API
    @property
    def tokenizer(self):
        """The decoder's tokenizer (the preprocessor's)."""
        return self.data_preprocessor.tokenizer

    def preprocess(self, images: List[Image.Image]) -> Tensor:
        """List of PIL images -> pixel tensor (resize, bicubic, mean/std)."""
        if isinstance(images, Image.Image):
            images = [images]
        if len(images) == 0:
            raise ValueError('no images to caption (an empty list)')
        return self.data_preprocessor.preprocess(images)

    def image_tokens(self, pixel_values: Tensor) -> Tensor:
        """Image tokens in the decoder's width [B, N, H]."""
        return self.image_proj(self.image_encoder(pixel_values))

    def caption_logits(self, pixel_values: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Next-token logits [B, L, V] of the captions ``input_ids`` ([CLS] text [SEP]) of the images."""
        return self.text_decoder(input_ids, attention_mask, self.image_tokens(pixel_values))

    @torch.no_grad()
    def generate_ids(self, pixel_values: Tensor, **options) -> Tensor:
        """Token ids [B, <= max_length] generated for a batch of images (see :meth:`generate`)."""
        opts = check_generation({**self.generation, **options})
        if pixel_values.shape[0] == 0:
            raise ValueError('no images to caption (an empty batch)')
        tokenizer = self.tokenizer
        max_length = opts['max_length'] or self.data_preprocessor.max_length
        check_generation(dict(max_length=max_length, min_length=opts['min_length']))
        tokens = self.image_tokens(pixel_values)
        batch = tokens.shape[0]
        start = torch.full((batch, 1), tokenizer.cls_token_id, dtype=torch.long, device=tokens.device)
        image_mask = torch.ones(tokens.shape[:2], dtype=torch.long, device=tokens.device)
        kwargs = dict(encoder_hidden_states=tokens, encoder_attention_mask=image_mask,
                      attention_mask=torch.ones_like(start), max_length=max_length,
                      min_length=opts['min_length'], num_beams=opts['num_beams'], do_sample=opts['do_sample'],
                      repetition_penalty=float(opts['repetition_penalty']),
                      eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id,
                      bos_token_id=tokenizer.cls_token_id, suppress_tokens=self._never_generated(),
                      use_cache=True, num_return_sequences=1)
        if opts['do_sample']:
            kwargs.update(top_p=float(opts['top_p']), temperature=float(opts['temperature']), top_k=0)
        else:  # the library's defaults for sampling would otherwise be reported as ignored
            kwargs.update(top_p=None, temperature=None, top_k=None)
        kwargs[self._cache_argument()] = self._new_cache()
        return self.text_decoder.model.generate(start, **kwargs)

    def _never_generated(self) -> List[int]:
        tokenizer = self.tokenizer
        return sorted(set(tokenizer.all_special_ids) - {tokenizer.sep_token_id})

    def _cache_argument(self) -> str:
        import inspect
        forward = inspect.signature(type(self.text_decoder.model).forward).parameters
        return 'cache' if 'cache' in forward else 'past_key_values'

    @staticmethod
    def _new_cache():
        # BERT's cross-attention keeps its keys/values in the second half of an encoder-decoder cache;
        # generate() would make a self-attention-only DynamicCache.
        from transformers import DynamicCache, EncoderDecoderCache
        return EncoderDecoderCache(DynamicCache(), DynamicCache())

    def decode(self, ids: Tensor) -> List[str]:
        """Generated ids -> captions without special tokens or the spaces between CJK characters."""
        texts = self.tokenizer.batch_decode(ids.tolist(), skip_special_tokens=True,
                                            clean_up_tokenization_spaces=False)
        return [_SPACE_NEXT_TO_WIDE.sub('', text).strip() for text in texts]

    def generate(self, pixel_values: Tensor, **options) -> List[str]:
        """Captions of a batch of normalised images (one transformers ``generate`` call for the batch).

        Options (defaults: ``generation``): ``max_length`` (tokens with [CLS] and [SEP], >= 2),
        ``min_length``, ``num_beams`` (>= 1; 1 is greedy), ``do_sample`` (nucleus sampling with
        ``top_p`` and ``temperature``), ``repetition_penalty``. Special tokens are never generated
        (except [SEP], which ends a caption) and never returned.
        """
        return self.decode(self.generate_ids(pixel_values, **options))

    def caption(self, images: List[Image.Image], **options) -> List[str]:
        """Captions of PIL images (see :meth:`generate`)."""
        return self.generate(self.preprocess(images).to(next(self.parameters()).dtype), **options)

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
        """A saved folder or Hub repo of a captioner, loaded strictly, in eval mode (see
        :func:`r2d2lib.io.pretrained.load_pretrained` for the keyword arguments)."""
        return load_pretrained(name_or_path, cls, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs):
        """:meth:`save_pretrained` to a temporary folder and upload it."""
        return _push_to_hub(self, repo_id, **kwargs)

    # ----------------------------------------------------------------- mmengine API
    def forward(self, inputs: dict, data_samples: Optional[list] = None, mode: str = 'tensor'):
        """``'loss'`` -> the objective's losses; ``'predict'`` -> one dict per image (``image_idx``,
        ``pred_caption``, ``gt_captions``) for :class:`~r2d2lib.evaluation.CaptionMetric`;
        ``'tensor'`` -> next-token logits."""
        if mode == 'loss':
            if self.objective is None:
                raise RuntimeError('this ImageCaptioner has no training objective: set model.objective '
                                   "(dict(type='CaptionObjective')) in the config")
            return self.objective(self, inputs)
        if mode == 'predict':
            captions = self.generate(inputs['images'])
            samples = data_samples or [None] * len(captions)
            return [dict(image_idx=int(idx), pred_caption=caption,
                         gt_captions=list(_field(sample, 'captions') or [_field(sample, 'text')]))
                    for idx, caption, sample in zip(inputs['image_ids'].tolist(), captions, samples)]
        if mode == 'tensor':
            return self.caption_logits(inputs['images'], inputs['input_ids'], inputs['attention_mask'])
        raise ValueError(f'mode must be "loss", "predict" or "tensor", got {mode!r}')


def _field(sample: Any, name: str) -> Any:
    if sample is None:
        return None
    if isinstance(sample, dict):
        return sample.get(name)
    return sample.get(name) if hasattr(sample, 'get') else getattr(sample, name, None)
