"""The positive relation between texts and images of a retrieval test set.

A text may have several positive images (MUGE lists a query with every matching
product image) and an image several positive texts (5 captions per image in
Flickr30k-CN); some images are positives of no text at all (MUGE's distractor
gallery). :class:`PositivePairs` holds the set of positive (text, image) pairs
as sorted int64 keys, so membership of any ``[Q, K]`` block of pairs is one
``searchsorted`` and memory is O(number of pairs).
"""
from typing import Optional

import torch
from torch import Tensor


class PositivePairs:
    """The set of positive (text position, image position) pairs of a gallery.

    Args:
        text_ids (Tensor): ``[P]`` text position of every positive pair.
        image_ids (Tensor): ``[P]`` image position of every positive pair.
        num_texts (int): Number of texts (positions ``0 .. num_texts - 1``).
        num_images (int): Number of images, gallery-only images included.

    Duplicated pairs count once.
    """

    def __init__(self, text_ids: Tensor, image_ids: Tensor, num_texts: int,
                 num_images: int) -> None:
        text_ids = torch.as_tensor(text_ids, dtype=torch.long).reshape(-1).cpu()
        image_ids = torch.as_tensor(image_ids, dtype=torch.long).reshape(-1).cpu()
        if text_ids.shape != image_ids.shape:
            raise ValueError(f'text_ids and image_ids differ in length: {text_ids.numel()} vs '
                             f'{image_ids.numel()}')
        if text_ids.numel() and (int(text_ids.min()) < 0 or int(text_ids.max()) >= num_texts):
            raise ValueError(f'text ids must lie in [0, {num_texts}), got {int(text_ids.min())}..'
                             f'{int(text_ids.max())}')
        if image_ids.numel() and (int(image_ids.min()) < 0 or int(image_ids.max()) >= num_images):
            raise ValueError(f'image ids must lie in [0, {num_images}), got '
                             f'{int(image_ids.min())}..{int(image_ids.max())}')
        self.num_texts, self.num_images = int(num_texts), int(num_images)
        self.keys = torch.unique(text_ids * self.num_images + image_ids)  # sorted

    @classmethod
    def from_txt2img(cls, txt2img: Tensor, num_images: Optional[int] = None) -> 'PositivePairs':
        """One positive image per text: ``txt2img[t]`` is text t's image position."""
        txt2img = torch.as_tensor(txt2img, dtype=torch.long).reshape(-1).cpu()
        if num_images is None:
            num_images = int(txt2img.max()) + 1 if txt2img.numel() else 0
        return cls(torch.arange(txt2img.numel()), txt2img, txt2img.numel(), num_images)

    def __len__(self) -> int:
        return self.keys.numel()

    @property
    def text_ids(self) -> Tensor:
        """``[P]`` text position of every pair, in key order."""
        return torch.div(self.keys, max(self.num_images, 1), rounding_mode='floor')

    @property
    def image_ids(self) -> Tensor:
        """``[P]`` image position of every pair, in key order."""
        return self.keys % max(self.num_images, 1)

    def texts_per_image(self) -> Tensor:
        """``[num_images]`` number of positive texts of every image (0: gallery-only)."""
        return torch.bincount(self.image_ids, minlength=self.num_images)

    def images_per_text(self) -> Tensor:
        """``[num_texts]`` number of positive images of every text."""
        return torch.bincount(self.text_ids, minlength=self.num_texts)

    def contains(self, text_idx: Tensor, image_idx: Tensor) -> Tensor:
        """Whether each (text, image) pair is positive; the arguments broadcast.

        Positions outside ``[0, num_texts)`` / ``[0, num_images)`` are never positive.
        """
        text_idx, image_idx = torch.broadcast_tensors(
            torch.as_tensor(text_idx).long().cpu(), torch.as_tensor(image_idx).long().cpu())
        valid = ((text_idx >= 0) & (text_idx < self.num_texts) & (image_idx >= 0) &
                 (image_idx < self.num_images))
        if self.keys.numel() == 0:
            return torch.zeros_like(valid)
        keys = text_idx * self.num_images + image_idx
        pos = torch.searchsorted(self.keys, keys.reshape(-1)).clamp(max=self.keys.numel() - 1)
        return valid & (self.keys[pos].view_as(keys) == keys)
