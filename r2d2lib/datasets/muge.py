"""MUGE multimodal retrieval: base64 images in a TSV file, queries in JSON-lines.

Two spellings of the same layout exist:

* the Tianchi release: ``MR_<split>_imgs.tsv`` and ``MR_<split>_queries.jsonl``
  with ``{"query_id", "query_text", "item_ids": [...]}``;
* Chinese-CLIP's preprocessed copy: ``<split>_imgs.tsv`` and
  ``<split>_texts.jsonl`` with ``{"text_id", "text", "image_ids": [...]}``
  (Chinese-CLIP ships Flickr30K-CN in the same layout, so it loads here too).

TSV lines are ``<image id><TAB><base64 image>``. Only the byte offset of every
line is kept in memory; ``LoadImage`` reads and decodes one line when a record
is loaded (``img_file`` + ``img_offset``).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Tuple

from tqdm import tqdm

from r2d2lib.registry import DATASETS

from .annotation_files import iter_json_lines, require
from .base import ImageTextDataset, PairCollector, annotation_error, warn

QUERY_ID_KEYS = ('query_id', 'text_id')
QUERY_TEXT_KEYS = ('query_text', 'text')
QUERY_IMAGES_KEYS = ('item_ids', 'image_ids')


def index_tsv_images(tsv_file: str, progress: bool = True) -> Dict[str, Tuple[int, int]]:
    """Map image id -> (byte offset, line number) of every line of an ``id<TAB>base64`` TSV.

    Reads the file once without decoding any image. Raises ``ValueError``
    (file, line) for a line without a tab or with an empty or repeated id.
    """
    index: Dict[str, Tuple[int, int]] = {}
    offset = 0
    size = os.path.getsize(tsv_file)
    with open(tsv_file, 'rb') as f, tqdm(total=size, unit='B', unit_scale=True,
                                          desc=f'indexing {os.path.basename(tsv_file)}',
                                          disable=not progress or size < (64 << 20)) as bar:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                key, sep, _ = line.partition(b'\t')
                image_id = key.strip().decode('utf-8', 'replace')
                if not sep or not image_id:
                    raise annotation_error(tsv_file, lineno, 'expected "<image id><TAB><base64 image>"')
                if image_id in index:
                    raise annotation_error(tsv_file, lineno, f'image id {image_id!r} already on line '
                                                             f'{index[image_id][1]}')
                index[image_id] = (offset, lineno)
            offset += len(line)
            bar.update(len(line))
    return index


@DATASETS.register_module()
class MUGEDataset(ImageTextDataset):
    """MUGE text-to-image retrieval: one record per (query, listed image).

    A query listing several images appears in several records with the same
    ``text_idx``; a query listing no image (``[]``, as in the unpublished test
    answers) is left out and counted in ``num_queries_without_images``. In
    test mode every image of the TSV that no query lists is added as a
    gallery-only record (``text=None``, ``text_idx=-1``): the gallery is the
    whole split. Records: ``img_path`` (``'<tsv path>#<id>'``, which names the
    image in logs and errors), ``img_file``, ``img_offset``, ``image_id``,
    ``query_id``, ``text``, ``image_idx``, ``text_idx``. Ids listed by a query
    but absent from the TSV count as missing images.

    Args:
        ann_file: The queries (JSON-lines).
        img_file: The split's ``id<TAB>base64`` TSV.
    """

    def __init__(self, ann_file: str, img_file: str, data_root: str = '', **kwargs: Any) -> None:
        self.img_file = img_file
        self.num_queries_without_images = 0
        super().__init__(ann_file=ann_file, data_root=data_root, **kwargs)

    def collect_pairs(self, collector: PairCollector) -> None:
        """Queries in file order, then (test mode) the unlisted gallery images."""
        tsv = self.resolve(self.img_file)
        images = index_tsv_images(tsv)

        def image_fields(image_id: str) -> Dict[str, Any]:
            offset = images[image_id][0] if image_id in images else None
            return dict(img_file=tsv, img_offset=offset, image_id=image_id)

        self.num_queries_without_images = 0
        for lineno, record in iter_json_lines(self.ann_file):
            query_id = require(record, QUERY_ID_KEYS[0], (int, str), self.ann_file, lineno,
                               QUERY_ID_KEYS[1:])
            text = require(record, QUERY_TEXT_KEYS[0], str, self.ann_file, lineno, QUERY_TEXT_KEYS[1:])
            image_ids = require(record, QUERY_IMAGES_KEYS[0], list, self.ann_file, lineno,
                                QUERY_IMAGES_KEYS[1:])
            for image_id in image_ids:
                if isinstance(image_id, bool) or not isinstance(image_id, (int, str)):
                    raise annotation_error(self.ann_file, lineno, f'image id {image_id!r} is not an '
                                                                  'integer or string')
            if not text.strip():
                collector.drop_empty_caption(lineno)
                continue
            if not image_ids:  # a test split whose answers are not public
                self.num_queries_without_images += 1
                continue
            for image_id in dict.fromkeys(map(str, image_ids)):  # an id listed twice counts once
                collector.add_pair(f'{tsv}#{image_id}', text, text_key=lineno, lineno=lineno,
                                   available=image_id in images, query_id=query_id,
                                   **image_fields(image_id))
        if self.num_queries_without_images:
            warn(f'{self.ann_file}: {self.num_queries_without_images} quer(y/ies) list no image '
                 '(unpublished answers?) and were left out')
        if self.test_mode:
            for image_id in images:
                collector.add_gallery_image(f'{tsv}#{image_id}', available=True,
                                            **image_fields(image_id))
