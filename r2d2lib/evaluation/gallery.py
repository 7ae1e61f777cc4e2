"""The unique images and texts of a retrieval test set, read from its pair records.

Image-text datasets hold one record per (image, text) pair::

    {'img_path', 'text', 'image_idx', 'text_idx', ...}

A text with several positive images appears in several records with the same
``text_idx`` (MUGE); an image with several captions in several records with
the same ``image_idx`` (Flickr30k-CN); a gallery-only image (MUGE's distractors)
has a record with ``text=None`` and ``text_idx=-1``. :class:`RetrievalGallery`
lists each image and each text once (ordered by their index), keeps the
record through which each image is loaded, and the positive pairs.
"""
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping

import torch
from torch import Tensor

from .positives import PositivePairs


@dataclass
class RetrievalGallery:
    """Unique images and texts of a test set and their positive pairs.

    Attributes:
        image_records (Tensor): ``[Ni]`` dataset index of a record of each image.
        image_ids (Tensor): ``[Ni]`` the images' ``image_idx`` (ascending).
        texts (list[str]): ``[Nt]`` the texts, ordered by ``text_idx``.
        text_ids (Tensor): ``[Nt]`` their ``text_idx`` (ascending).
        positives (PositivePairs): positive pairs, in positions of the above.
    """

    image_records: Tensor
    image_ids: Tensor
    texts: List[str]
    text_ids: Tensor
    positives: PositivePairs

    @property
    def num_images(self) -> int:
        return int(self.image_ids.numel())

    @property
    def num_texts(self) -> int:
        return len(self.texts)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]],
                     source: str = 'dataset') -> 'RetrievalGallery':
        """Build from pair records (in dataset order); errors name ``source`` and the record."""
        first_record: Dict[int, int] = {}
        texts: Dict[int, str] = {}
        pairs = []
        for index, record in enumerate(records):
            where = f'{source}, record {index}'
            for key in ('image_idx', 'text_idx', 'text'):
                if key not in record:
                    raise KeyError(f'{where}: missing key {key!r} (retrieval records need image_idx, '
                                   'text_idx and text)')
            image_idx, text_idx, text = int(record['image_idx']), int(record['text_idx']), record['text']
            if image_idx < 0:
                raise ValueError(f'{where}: image_idx must be >= 0, got {image_idx}')
            first_record.setdefault(image_idx, index)
            if text is None or text_idx < 0:
                if text is not None or text_idx != -1:
                    raise ValueError(f'{where}: a gallery-only image has text=None and text_idx=-1, '
                                     f'got text={text!r}, text_idx={text_idx}')
                continue
            if texts.setdefault(text_idx, text) != text:
                raise ValueError(f'{where}: text_idx {text_idx} is {text!r} here but '
                                 f'{texts[text_idx]!r} in an earlier record')
            pairs.append((text_idx, image_idx))
        image_ids = torch.tensor(sorted(first_record), dtype=torch.long)
        text_ids = torch.tensor(sorted(texts), dtype=torch.long)
        pair_ids = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)
        positives = PositivePairs(torch.searchsorted(text_ids, pair_ids[:, 0].contiguous()),
                                  torch.searchsorted(image_ids, pair_ids[:, 1].contiguous()),
                                  len(text_ids), len(image_ids))
        return cls(image_records=torch.tensor([first_record[i] for i in image_ids.tolist()],
                                              dtype=torch.long),
                   image_ids=image_ids, texts=[texts[t] for t in text_ids.tolist()],
                   text_ids=text_ids, positives=positives)

    @classmethod
    def from_dataset(cls, dataset) -> 'RetrievalGallery':
        """Read every record of an mmengine dataset (``get_data_info``)."""
        if not callable(getattr(dataset, 'get_data_info', None)):
            raise TypeError(f'{type(dataset).__name__} has no get_data_info(i): the retrieval loops '
                            'read the pair records of an mmengine BaseDataset')
        if callable(getattr(dataset, 'full_init', None)):
            dataset.full_init()
        source = getattr(dataset, 'ann_file', None) or type(dataset).__name__
        return cls.from_records((dataset.get_data_info(i) for i in range(len(dataset))), str(source))
