"""Caption evaluation sets: one item per image with all its reference captions.

Training a captioner needs (image, caption) pairs, which every retrieval loader already yields
(``RetrievalDataset`` for the toy corpus, ``AICICCDataset``, ``COCOCNDataset``,
``Flickr30kCNDataset``): one record per caption. Evaluating one needs each image once, with every
caption of it as a reference; :class:`ImageCaptionsDataset` regroups the records of any of those
loaders, so the released formats are parsed by the same code, and bad lines and images behave as
there (a malformed line stops with the file and line; a missing image is dropped and counted; an
unreadable image is an error in test mode).
"""
from __future__ import annotations

from typing import Any, Dict, List

from r2d2lib.registry import DATASETS

from .base import SkipUnreadableDataset


@DATASETS.register_module()
class ImageCaptionsDataset(SkipUnreadableDataset):
    """The images of an image-text dataset, each once, with its captions (``captions``).

    Records: ``img_path``, ``image_idx``, ``image_id``, ``captions`` (every caption of the image, in
    file order), ``text`` and ``text_idx`` (its first caption, so the usual preprocessor and
    ``PackInputs(algorithm_keys=['text', 'image_idx', 'text_idx', 'captions'])`` work unchanged).

    Args:
        dataset: DATASETS config of the loader whose records are regrouped (its ``pipeline`` and
            ``test_mode`` are this dataset's).
        pipeline: the image pipeline.
        test_mode: evaluation (an unreadable image is an error rather than skipped).
    """

    def __init__(self, dataset: dict, pipeline=(), test_mode: bool = True, **kwargs: Any) -> None:
        if not isinstance(dataset, dict) or 'type' not in dataset:
            raise TypeError(f'dataset must be a DATASETS config dict with a "type", got {dataset!r}')
        self.source_cfg = dict(dataset)
        self.source = None
        super().__init__(ann_file='', data_root='', pipeline=list(pipeline), test_mode=test_mode, **kwargs)

    def load_data_list(self) -> List[dict]:
        """Build the source dataset (no pipeline) and group its records by ``image_idx``."""
        self.source = DATASETS.build({**self.source_cfg, 'pipeline': [], 'test_mode': self.test_mode})
        self.data_report = getattr(self.source, 'data_report', self.data_report)
        images: Dict[int, dict] = {}
        for idx in range(len(self.source)):
            record = self.source.get_data_info(idx)
            image = images.get(record['image_idx'])
            if image is None:
                images[record['image_idx']] = dict(
                    img_path=record['img_path'], image_idx=record['image_idx'],
                    image_id=record.get('image_id', ''), text=record['text'], text_idx=record['text_idx'],
                    captions=[record['text']])
            else:
                image['captions'].append(record['text'])
        return list(images.values())

    @property
    def num_images(self) -> int:
        """Number of images (items)."""
        return len(self)

    @property
    def num_texts(self) -> int:
        """Number of reference captions."""
        return sum(len(self.get_data_info(i)['captions']) for i in range(len(self)))
