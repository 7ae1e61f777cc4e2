"""Image-text matching dataset (ICM, IQM): JSON-lines pairs with a 0/1 label.

The official R2D2 release: ``ICM/{train,val,test}/long_itm_<split>.json`` and
``IQM/.../short_itm_<split>.json``, one ``{"image_path", "text", "label"}``
object per line, images in one shared folder (the official code keeps only
the file name of ``image_path``; so does ``strip_image_dirs=True``).
"""
from __future__ import annotations

import os.path as osp
from typing import Any, Dict, Optional

from r2d2lib.registry import DATASETS

from .annotation_files import iter_json_lines
from .base import PairCollector, annotation_error
from .retrieval import RetrievalDataset, check_record

LABEL_SPELLINGS = {0: 0, 1: 1, '0': 0, '1': 1}


def parse_label(record: Dict[str, Any], ann_file: str, lineno: Optional[int]) -> int:
    """The 0/1 ``label`` of a matching annotation (int, or the strings "0"/"1")."""
    if 'label' not in record:
        raise annotation_error(ann_file, lineno, 'missing key "label"')
    value = record['label']
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value not in LABEL_SPELLINGS:
        raise annotation_error(ann_file, lineno, f'"label" must be 0 or 1, got {value!r}')
    return LABEL_SPELLINGS[value]


@DATASETS.register_module()
class MatchingDataset(RetrievalDataset):
    """Labelled image-text pairs for image-text matching (ICM, IQM).

    Records as :class:`RetrievalDataset` (one per line: ``img_path``, ``text``,
    ``image_id``, ``image_idx``, ``text_idx``) plus ``label`` (1 = the text
    matches the image, 0 = it does not). ``metainfo`` adds ``num_positives``
    and ``num_negatives``.
    """

    def full_init(self) -> None:
        """Load, then count labels into metainfo."""
        if self._fully_initialized:
            return
        super().full_init()
        labels = [self.get_data_info(i)['label'] for i in range(len(self))]
        self._metainfo.update(num_positives=sum(labels), num_negatives=len(labels) - sum(labels))

    def collect_pairs(self, collector: PairCollector) -> None:
        """One labelled pair per line; a malformed label stops with the line."""
        for lineno, record in iter_json_lines(self.ann_file):
            label = parse_label(record, self.ann_file, lineno)
            record = check_record(record, self.ann_file, lineno)
            path = self._image_path(record['image_path'])
            collector.add_pair(path, record['text'], lineno=lineno,
                               image_id=osp.splitext(osp.basename(path))[0], label=label)
