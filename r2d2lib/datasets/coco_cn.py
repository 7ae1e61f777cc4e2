"""COCO-CN: Chinese captions of MS-COCO images, as released (``coco-cn-version1805v1.1``).

The release holds split lists ``coco-cn_{train,val,test}.txt`` (ids such as
``COCO_val2014_000000391895``) and caption files shared by all splits:
``imageid.human-written-caption.txt`` (every split) and
``imageid.manually-translated-caption.txt`` (test only), lines
``<id>#<n><TAB><caption>``. Images come from MS-COCO 2014:
``<data_prefix img_path>/{train2014,val2014}/<id>.jpg``, the folder named by
the id.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List

from r2d2lib.registry import DATASETS

from .annotation_files import iter_text_lines
from .base import ImageTextDataset, PairCollector, annotation_error
from .caption_files import parse_caption_line

COCO_ID = re.compile(r'COCO_(train|val)2014_\d{12}')


@DATASETS.register_module()
class COCOCNDataset(ImageTextDataset):
    """COCO-CN captions of one split, one record per caption.

    Records: ``img_path``, ``text``, ``image_id`` (the COCO-CN id),
    ``caption_id``, ``image_idx``, ``text_idx``. Image and caption order
    follow the split list. In test mode, split images without a caption are
    added as gallery-only records.

    Args:
        ann_file: Caption file (``imageid.human-written-caption.txt`` or
            ``imageid.manually-translated-caption.txt``).
        split_file: The split's id list (``coco-cn_<split>.txt``).
    """

    def __init__(self, ann_file: str, split_file: str, data_root: str = '', **kwargs: Any) -> None:
        self.split_file = split_file
        super().__init__(ann_file=ann_file, data_root=data_root, **kwargs)

    def _read_split(self) -> List[str]:
        """Split ids in file order; a malformed id stops with its line."""
        path = self.resolve(self.split_file)
        ids: List[str] = []
        for lineno, line in iter_text_lines(path):
            image_id = line.strip()
            if not COCO_ID.fullmatch(image_id):
                raise annotation_error(path, lineno, f'expected an id like COCO_val2014_000000391895, '
                                                     f'got {image_id[:80]!r}')
            ids.append(image_id)
        return ids

    def collect_pairs(self, collector: PairCollector) -> None:
        """Captions of the split's images, in split order."""
        split_ids = self._read_split()
        captions: Dict[str, List[tuple]] = {image_id: [] for image_id in split_ids}
        for lineno, line in iter_text_lines(self.ann_file):
            entry = parse_caption_line(line, self.ann_file, lineno)
            if not COCO_ID.fullmatch(entry.image):
                raise annotation_error(self.ann_file, lineno,
                                       f'image id {entry.image[:80]!r} is not a COCO 2014 id')
            if entry.image in captions:
                captions[entry.image].append((entry.caption_id, entry.text, lineno))
        for image_id in split_ids:
            part = COCO_ID.fullmatch(image_id).group(1)
            path = self.image_path(f'{part}2014/{image_id}.jpg')
            for caption_id, text, lineno in captions[image_id]:
                collector.add_pair(path, text, lineno=lineno, image_id=image_id, caption_id=caption_id)
            if self.test_mode:
                collector.add_gallery_image(path, image_id=image_id)
