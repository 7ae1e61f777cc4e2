"""Turns collated image-text batches into model inputs: normalised pixels and token ids."""
from __future__ import annotations

import inspect
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmengine.model import BaseDataPreprocessor
from PIL import Image
from torch import Tensor

from r2d2lib.io.images import to_rgb
from r2d2lib.io.texts import check_texts
from r2d2lib.registry import MODELS

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: truncated texts kept (shortened) in ``truncated_examples``
MAX_TRUNCATED_EXAMPLES = 5

__all__ = ['CLIP_MEAN', 'CLIP_STD', 'ImageTextDataPreprocessor', 'build_tokenizer', 'check_texts']


def build_tokenizer(cfg: dict):
    """Build a BertTokenizerFast from ``dict(vocab_file=...)`` or ``dict(name_or_path=...)``.

    ``name_or_path`` is a local directory or a Hub id (honours HF_HUB_OFFLINE and
    the Hugging Face cache); ``vocab_file`` builds from a WordPiece vocabulary file
    (the toy corpus writes one), lower-casing and splitting CJK characters one per
    token as chinese-roberta-wwm-ext does. Remaining keys go to the tokenizer.
    """
    from transformers import BertTokenizerFast
    cfg = dict(cfg)
    cfg.pop('type', None)
    if 'name_or_path' in cfg and 'vocab_file' in cfg:
        raise KeyError('tokenizer config has both "name_or_path" and "vocab_file"; give one')
    if 'name_or_path' in cfg:
        name = cfg.pop('name_or_path')
        tokenizer = BertTokenizerFast.from_pretrained(name, **cfg)
        # transformers 5 returns a tokenizer of the special tokens alone when the files are
        # missing (offline, not cached) instead of raising: every character would become [UNK].
        if len(tokenizer) <= len(tokenizer.all_special_tokens):
            raise OSError(f'tokenizer {name!r} loaded without a vocabulary ({len(tokenizer)} tokens): '
                          'its files are not in the Hugging Face cache (HF_HUB_OFFLINE?) or the path '
                          'is wrong')
        return tokenizer
    if 'vocab_file' not in cfg:
        raise KeyError(f'tokenizer config needs "vocab_file" or "name_or_path", got {sorted(cfg)}')
    vocab_file = str(cfg.pop('vocab_file'))
    with open(vocab_file, encoding='utf-8') as f:
        vocab = {line.rstrip('\n'): i for i, line in enumerate(f)}
    cfg = dict(dict(do_lower_case=True, tokenize_chinese_chars=True), **cfg)
    # transformers 5 takes the vocabulary itself (``vocab=``) and silently ignores
    # ``vocab_file=``, which would leave a 5-token vocabulary mapping every character to [UNK].
    if 'vocab' in inspect.signature(BertTokenizerFast.__init__).parameters:
        tokenizer = BertTokenizerFast(vocab=vocab, **cfg)
    else:
        tokenizer = BertTokenizerFast(vocab_file=vocab_file, **cfg)
    if len(tokenizer) != len(vocab):
        raise RuntimeError(f'tokenizer has {len(tokenizer)} tokens but {vocab_file} lists {len(vocab)}')
    return tokenizer


@MODELS.register_module()
class ImageTextDataPreprocessor(BaseDataPreprocessor):
    """Normalise images with the CLIP mean/std and tokenise the captions of a batch.

    Input: mmengine's collated ``dict(inputs=uint8 [B, 3, H, W] or list, data_samples=[...])``
    whose samples carry ``text``, ``image_idx`` and ``text_idx``. Output:
    ``dict(inputs=dict(images, input_ids, attention_mask, image_ids, text_ids), data_samples)``,
    i.e. the arguments of ``forward(inputs, data_samples, mode)``.

    The tokenizer is built on first use, so building a model never downloads.
    Texts are padded to ``max_length`` (64, as the official code) so that hidden
    states of every rank have the same length and can be gathered.

    Text hygiene (:meth:`tokenize`, used by training, evaluation and the inferencer): a text
    that is not a str, not valid Unicode (a lone surrogate) or empty / whitespace-only is a
    ``TypeError`` / ``ValueError`` naming its index; special tokens typed in a text (``[SEP]``,
    ``[MASK]``, ...) are tokenised as the characters they are, never as the special tokens;
    a text longer than ``max_length`` tokens is cut, and counted: ``num_truncated`` (this
    process, since construction) and ``truncated_examples`` (the first few, shortened), which
    the data report logs (:class:`~r2d2lib.datasets.data_report.DataReportHook`).

    Args:
        image_size: side of the square model input (``preprocess`` resizes to it).
        mean, std: per-channel normalisation in [0, 1] units (CLIP's by default).
        tokenizer: config for :func:`build_tokenizer`.
        max_length: text length in tokens, [CLS] and [SEP] included.
    """

    def __init__(self, image_size: int = 224, mean: Sequence[float] = CLIP_MEAN,
                 std: Sequence[float] = CLIP_STD,
                 tokenizer: Optional[dict] = None, max_length: int = 64):
        super().__init__()
        self.image_size = image_size
        self.register_buffer('mean', torch.tensor(mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer('std', torch.tensor(std).view(1, 3, 1, 1) * 255, persistent=False)
        self.tokenizer_cfg = dict(tokenizer or dict(name_or_path='hfl/chinese-roberta-wwm-ext'))
        self.max_length = max_length
        self._tokenizer = None
        self.num_truncated = 0
        self.truncated_examples: List[str] = []

    @property
    def tokenizer(self):
        """The Hugging Face tokenizer, built on first access."""
        if self._tokenizer is None:
            self._tokenizer = build_tokenizer(self.tokenizer_cfg)
        return self._tokenizer

    def tokenize(self, texts: List[str]) -> dict:
        """Texts -> ``dict(input_ids, attention_mask)`` [B, max_length] on this module's device.

        ``[CLS] text [SEP]``, cut to ``max_length`` tokens and padded. See the class doc for
        what is refused (with the text's index) and what is counted.
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        check_texts(texts)
        tokenizer = self.tokenizer
        # split_special_tokens: '[SEP]' typed by a user is the five characters, not token 102.
        pieces = tokenizer(texts, add_special_tokens=False, truncation=False, padding=False,
                           split_special_tokens=True, verbose=False)['input_ids']
        room = self.max_length - 2
        ids = torch.full((len(texts), self.max_length), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(texts), self.max_length), dtype=torch.long)
        for row, (text, piece) in enumerate(zip(texts, pieces)):
            if len(piece) > room:
                self._count_truncated(text, len(piece))
                piece = piece[:room]
            tokens = [tokenizer.cls_token_id, *piece, tokenizer.sep_token_id]
            ids[row, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[row, :len(tokens)] = 1
        return dict(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))

    def _count_truncated(self, text: str, num_tokens: int) -> None:
        self.num_truncated += 1
        shown = text if len(text) <= 40 else text[:40] + '...'
        example = f'{shown!r} ({len(text)} characters, {num_tokens + 2} tokens)'
        if len(self.truncated_examples) < MAX_TRUNCATED_EXAMPLES and example not in self.truncated_examples:
            self.truncated_examples.append(example)

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 (or 0-255 float) RGB [B, 3, H, W] -> normalised float pixels."""
        return (images.float() - self.mean) / self.std

    def preprocess(self, images: List[Image.Image]) -> Tensor:
        """PIL images -> normalised pixels: RGB, resized (not cropped) to ``image_size``, bicubic.

        Converted to RGB by :func:`r2d2lib.io.images.to_rgb` (EXIF orientation, 16-bit
        and float modes scaled, alpha composited on white), as every image r2d2lib reads.
        """
        if isinstance(images, Image.Image):
            images = [images]
        size = (self.image_size, self.image_size)
        arrays = [np.asarray(to_rgb(im).resize(size, Image.BICUBIC)) for im in images]
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(self.device)
        return self.normalize(pixels)

    def forward(self, data: dict, training: bool = False) -> dict:
        """Collated batch -> ``dict(inputs=..., data_samples=...)`` (see the class doc)."""
        data = self.cast_data(data)
        images = data['inputs']
        if isinstance(images, (list, tuple)):
            images = torch.stack(list(images))
        samples = data['data_samples']
        tokens = self.tokenize([s.text for s in samples])
        inputs = dict(
            images=self.normalize(images),
            **tokens,
            image_ids=torch.tensor([int(s.image_idx) for s in samples], device=self.device),
            text_ids=torch.tensor([int(s.text_idx) for s in samples], device=self.device),
        )
        return dict(inputs=inputs, data_samples=samples)
