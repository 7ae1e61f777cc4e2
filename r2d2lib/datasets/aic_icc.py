"""AIC-ICC: AI Challenger image Chinese captioning, as released.

``ai_challenger_caption_train_20170902/caption_train_annotations_20170902.json``
is one JSON array of ``{"url", "image_id": "<sha1>.jpg", "caption": [5 texts]}``
beside ``caption_train_images_20170902/``; validation is
``ai_challenger_caption_validation_20170910/caption_validation_annotations_20170910.json``
with ``caption_validation_images_20170910/``. The test sets were not released.
"""
from __future__ import annotations

from typing import Any, Optional

from r2d2lib.registry import DATASETS

from .annotation_files import iter_json_array
from .base import ImageTextDataset, PairCollector, annotation_error


@DATASETS.register_module()
class AICICCDataset(ImageTextDataset):
    """AI Challenger captions, one record per caption.

    Records: ``img_path``, ``text``, ``image_id`` (the file name without
    ``.jpg``), ``image_idx``, ``text_idx``. A malformed entry stops with the
    file, the line and the entry index.

    Args:
        max_images: Keep the first ``max_images`` entries (images) of the
            file with all their captions. The paper (after Wukong) evaluates on
            the first 10,000 validation images and their 50,000 texts.
    """

    def __init__(self, ann_file: str, data_root: str = '', max_images: Optional[int] = None,
                 **kwargs: Any) -> None:
        if max_images is not None and max_images < 1:
            raise ValueError(f'max_images must be positive, got {max_images}')
        self.max_images = max_images
        super().__init__(ann_file=ann_file, data_root=data_root, **kwargs)

    def collect_pairs(self, collector: PairCollector) -> None:
        """Every caption of the first ``max_images`` entries."""
        for index, lineno, entry in iter_json_array(self.ann_file):
            if self.max_images is not None and index >= self.max_images:
                break
            where = f'element {index}'
            if not isinstance(entry, dict):
                raise annotation_error(self.ann_file, lineno, f'{where}: expected an object, got '
                                                              f'{type(entry).__name__}')
            name, captions = entry.get('image_id'), entry.get('caption')
            if not isinstance(name, str) or not name.strip():
                raise annotation_error(self.ann_file, lineno, f'{where}: "image_id" must be a '
                                                              f'non-empty string, got {name!r}')
            if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
                raise annotation_error(self.ann_file, lineno, f'{where} ({name}): "caption" must be a '
                                                              'list of strings')
            for text in captions:
                collector.add_pair(self.image_path(name), text, lineno=lineno,
                                   image_id=name.rsplit('.', 1)[0])
