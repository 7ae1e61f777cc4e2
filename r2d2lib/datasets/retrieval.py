"""Image-text retrieval dataset reading the ICR/IQR JSON-lines annotation format.

One ``{"image_path": ..., "text": ...}`` object per line; ``image_path`` is
relative to ``data_root`` / ``data_prefix['img_path']`` (or absolute). The
official R2D2 code keeps only the file name of ``image_path`` and joins it to
its image folder; ``strip_image_dirs=True`` does the same. Bad data is handled
as every r2d2lib dataset does it (``base.py``):

* malformed line (bad JSON, not an object, missing or non-string
  ``image_path``/``text``): ``ValueError`` at construction, naming the file and
  the 1-based line number;
* empty caption, or listed image file missing: record dropped at load time,
  counted (``num_empty_captions``, ``num_missing_images``) and logged;
* image unreadable when loaded (``UnreadableImageError`` from ``LoadImage``):
  skipped in training (another sample is drawn, ``num_unreadable_images``
  counts distinct files), an error in test mode.
"""
from __future__ import annotations

import os.path as osp
from typing import Any, Dict, Optional

from r2d2lib.registry import DATASETS

from .annotation_files import iter_json_lines, parse_json_object, require
from .base import ImageTextDataset, PairCollector, annotation_error


def parse_line(raw: bytes, ann_file: str, lineno: int) -> Optional[Dict[str, str]]:
    """Parse one ICR/IQR annotation line; None for a blank line.

    Raises:
        ValueError: naming ``ann_file`` and ``lineno`` if the line is malformed.
    """
    try:
        line = raw.decode('utf-8-sig' if lineno == 1 else 'utf-8')
    except UnicodeDecodeError as err:
        raise annotation_error(ann_file, lineno, f'not valid UTF-8 ({err})') from None
    if not line.strip():
        return None
    return check_record(parse_json_object(line, ann_file, lineno), ann_file, lineno)


def check_record(record: Dict[str, Any], ann_file: str, lineno: int) -> Dict[str, str]:
    """The ``image_path`` and ``text`` of a parsed line, checked."""
    image_path = require(record, 'image_path', str, ann_file, lineno)
    text = require(record, 'text', str, ann_file, lineno)
    if not image_path.strip():
        raise annotation_error(ann_file, lineno, '"image_path" is empty')
    return {'image_path': image_path, 'text': text}


@DATASETS.register_module()
class RetrievalDataset(ImageTextDataset):
    """Image-text pairs from an ICR/IQR JSON-lines file, one record per caption.

    Each record: ``img_path`` (full path), ``text``, ``image_id`` (file name
    without extension), ``image_idx`` (consecutive index of distinct image
    paths in order of first appearance among kept records, identical on every
    rank), ``text_idx`` (index among kept records: every line is a text).

    Args:
        strip_image_dirs: Keep only the file name of ``image_path`` (as the
            official R2D2 code does with the released ICR/IQR files).
    """

    def __init__(self, ann_file: str, data_root: str = '', strip_image_dirs: bool = False,
                 **kwargs: Any) -> None:
        self.strip_image_dirs = strip_image_dirs
        super().__init__(ann_file=ann_file, data_root=data_root, **kwargs)

    def _image_path(self, image_path: str) -> str:
        """Full path of an annotation's image (absolute paths kept unless stripped)."""
        if self.strip_image_dirs:
            image_path = osp.basename(image_path)
        return self.image_path(image_path)

    def collect_pairs(self, collector: PairCollector) -> None:
        """One pair per annotation line."""
        for lineno, record in iter_json_lines(self.ann_file):
            record = check_record(record, self.ann_file, lineno)
            path = self._image_path(record['image_path'])
            collector.add_pair(path, record['text'], lineno=lineno,
                               image_id=osp.splitext(osp.basename(path))[0])

