"""Flickr30k-CN and Flickr30k-CNA: caption token files beside the Flickr30k image folder.

Flickr30k-CN (Lan et al. 2017) is released as VisualSearch collections, one
per split (``flickr30kzhbbosontrain``, ``flickr30kzhbbosonval``,
``flickr30kzhmbosontest``), each with ``ImageSets/<collection>.txt`` (image
ids) and ``TextData/seg.<collection>.caption.txt`` (``<id>#<lang>#<n>`` then
the word-segmented caption). Flickr30k-CNA (the R2D2 paper) is
``<split>/flickr30k_cna_<split>.txt`` with ``<id>#<n><TAB><caption>``. Both
refer to Flickr30k's ``<id>.jpg`` images.
"""
from __future__ import annotations

from typing import Any, Optional, Set

from r2d2lib.registry import DATASETS

from .annotation_files import iter_text_lines
from .base import ImageTextDataset, PairCollector, warn
from .caption_files import join_segmented, parse_caption_line, read_id_list


@DATASETS.register_module()
class Flickr30kCNDataset(ImageTextDataset):
    """Flickr30k-CN / Flickr30k-CNA captions, one record per caption line.

    Records: ``img_path``, ``text``, ``image_id`` (Flickr id), ``caption_id``
    (the line's key), ``image_idx``, ``text_idx`` (contract of docs/datasets.md).

    Args:
        ann_file: The caption file of the split.
        image_list: Optional list of the split's image ids (``ImageSets``
            file). Captions of images outside it are ignored (counted in
            ``num_outside_split``, logged); in test mode its images without a
            caption are added as gallery-only records.
        image_ext: Extension appended to ids written without one.
        join_segmented: Remove word-segmentation spaces (spaces between ASCII
            letters/digits are kept). None: only for the space-separated
            (VisualSearch) spelling, whose captions are segmented.
    """

    def __init__(self, ann_file: str, data_root: str = '', image_list: Optional[str] = None,
                 image_ext: str = '.jpg', join_segmented: Optional[bool] = None,
                 **kwargs: Any) -> None:
        self.image_list = image_list
        self.image_ext = image_ext
        self.join_segmented = join_segmented
        self.num_outside_split = 0
        super().__init__(ann_file=ann_file, data_root=data_root, **kwargs)

    def _file_name(self, image: str) -> str:
        return image if '.' in image else image + self.image_ext

    def collect_pairs(self, collector: PairCollector) -> None:
        """Captions in file order; gallery-only images of the split in test mode."""
        split_ids = read_id_list(self.resolve(self.image_list)) if self.image_list else None
        allowed: Optional[Set[str]] = None
        if split_ids is not None:
            allowed = {self._file_name(i) for i in split_ids}
        self.num_outside_split = 0
        for lineno, line in iter_text_lines(self.ann_file):
            entry = parse_caption_line(line, self.ann_file, lineno)
            name = self._file_name(entry.image)
            if allowed is not None and name not in allowed:
                self.num_outside_split += 1
                continue
            join = entry.segmented if self.join_segmented is None else self.join_segmented
            text = join_segmented(entry.text) if join else entry.text
            collector.add_pair(self.image_path(name), text, lineno=lineno, image_id=name.rsplit('.', 1)[0],
                               caption_id=entry.caption_id)
        if self.num_outside_split:
            warn(f'{self.ann_file}: ignored {self.num_outside_split} caption(s) of images not in '
                 f'{self.image_list}')
        if self.test_mode and split_ids is not None:
            for image in split_ids:
                name = self._file_name(image)
                collector.add_gallery_image(self.image_path(name), image_id=name.rsplit('.', 1)[0])
