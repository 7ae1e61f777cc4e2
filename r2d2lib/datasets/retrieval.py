"""Image-text retrieval dataset reading the ICR/IQR JSON-lines annotation format.

One ``{"image_path": ..., "text": ...}`` object per line; ``image_path`` is
relative to ``data_root`` (or absolute). Problems are handled by kind:

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

import json
import logging
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Set, Union

from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from r2d2lib.registry import DATASETS

from .transforms import UnreadableImageError

MAX_LOGGED_PATHS = 20


def _warn(msg: str) -> None:
    """Log a warning through the current MMLogger."""
    print_log(msg, logger='current', level=logging.WARNING)


def parse_line(raw: bytes, ann_file: str,
               lineno: int) -> Optional[Dict[str, str]]:
    """Parse one annotation line; None for a blank line.

    Raises:
        ValueError: naming ``ann_file`` and ``lineno`` if the line is malformed.
    """
    where = f'{ann_file}, line {lineno}'
    try:
        line = raw.decode('utf-8-sig' if lineno == 1 else 'utf-8')
    except UnicodeDecodeError as err:
        raise ValueError(f'{where}: not valid UTF-8 ({err})') from None
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f'{where}: invalid JSON ({err})') from None
    if not isinstance(record, dict):
        raise ValueError(f'{where}: expected a JSON object, got '
                         f'{type(record).__name__}')
    for key in ('image_path', 'text'):
        if key not in record:
            raise ValueError(f'{where}: missing key "{key}"')
        if not isinstance(record[key], str):
            raise ValueError(f'{where}: "{key}" must be a string, got '
                             f'{type(record[key]).__name__}')
    if not record['image_path'].strip():
        raise ValueError(f'{where}: "image_path" is empty')
    return {'image_path': record['image_path'], 'text': record['text']}


@DATASETS.register_module()
class RetrievalDataset(BaseDataset):
    """Image-text pairs from an ICR/IQR JSON-lines file, one record per caption.

    Each record: ``img_path`` (full path), ``text``, ``image_id`` (file name
    without extension), ``image_idx`` (consecutive index of distinct image
    paths in order of first appearance among kept records, identical on every
    rank), ``text_idx`` (index among kept records).

    ``num_unreadable_images`` is counted per process: with DataLoader workers
    each worker keeps its own count (the warnings are logged either way).
    """

    def __init__(self, ann_file: str, data_root: str = '',
                 pipeline: Sequence[Union[dict, Any]] = (),
                 test_mode: bool = False, **kwargs: Any) -> None:
        self.num_missing_images = 0
        self.num_empty_captions = 0
        self.num_unreadable_images = 0
        self._num_images = 0
        self._num_texts = 0
        self._unreadable_paths: Set[str] = set()
        super().__init__(ann_file=ann_file, data_root=data_root,
                         pipeline=list(pipeline), test_mode=test_mode,
                         **kwargs)

    @property
    def num_images(self) -> int:
        """Number of distinct images among the loaded records."""
        return self._num_images

    @property
    def num_texts(self) -> int:
        """Number of loaded captions (records)."""
        return self._num_texts

    def full_init(self) -> None:
        """Load annotations, then add ``num_images``/``num_texts`` to metainfo."""
        if self._fully_initialized:
            return
        super().full_init()
        self._metainfo.update(num_images=self._num_images,
                              num_texts=self._num_texts)

    def _image_path(self, image_path: str) -> str:
        """Full path of an annotation's image (absolute paths kept)."""
        return osp.join(self.data_prefix.get('img_path', '') or '', image_path)

    def load_data_list(self) -> List[dict]:
        """Parse the annotation file into records, dropping unusable ones."""
        self.num_missing_images = 0
        self.num_empty_captions = 0
        exists: Dict[str, bool] = {}
        missing: List[str] = []
        image_idx: Dict[str, int] = {}
        data_list: List[dict] = []
        with open(self.ann_file, 'rb') as f:
            for lineno, raw in enumerate(f, start=1):
                record = parse_line(raw, self.ann_file, lineno)
                if record is None:
                    continue
                text = record['text'].strip()
                if not text:
                    self.num_empty_captions += 1
                    continue
                path = self._image_path(record['image_path'])
                if path not in exists:
                    exists[path] = osp.isfile(path)
                    if not exists[path]:
                        missing.append(path)
                if not exists[path]:
                    self.num_missing_images += 1
                    continue
                data_list.append({
                    'img_path': path,
                    'text': text,
                    'image_id': osp.splitext(osp.basename(path))[0],
                    'image_idx': image_idx.setdefault(path, len(image_idx)),
                    'text_idx': len(data_list),
                })
        self._report_dropped(missing)
        self._num_images = len(image_idx)
        self._num_texts = len(data_list)
        return data_list

    def _report_dropped(self, missing: List[str]) -> None:
        """Log dropped records: empty captions and missing image files."""
        if self.num_empty_captions:
            _warn(f'{self.ann_file}: dropped {self.num_empty_captions} '
                  'record(s) with an empty caption')
        if missing:
            shown = '\n  '.join(missing[:MAX_LOGGED_PATHS])
            more = len(missing) - MAX_LOGGED_PATHS
            tail = f'\n  ... and {more} more' if more > 0 else ''
            _warn(f'{self.ann_file}: {len(missing)} listed image file(s) do '
                  f'not exist; dropped {self.num_missing_images} record(s):'
                  f'\n  {shown}{tail}')

    def prepare_data(self, idx: int) -> Any:
        """Run the pipeline on record ``idx``; None if its image is unreadable.

        In test mode an unreadable image raises instead.
        """
        data_info = self.get_data_info(idx)
        if data_info['img_path'] in self._unreadable_paths:
            return None
        try:
            return self.pipeline(data_info)
        except UnreadableImageError as err:
            if self.test_mode:
                raise UnreadableImageError(
                    err.path, f'{err.reason} (record {idx} of {self.ann_file}; '
                    'test mode does not skip images, as that would bias the '
                    'evaluation: fix or remove this image)') from err
            self._unreadable_paths.add(err.path)
            self.num_unreadable_images += 1
            _warn(f'skipping unreadable image {err.path} ({err.reason}); '
                  f'{self.num_unreadable_images} unreadable image(s) so far '
                  'in this process')
            return None
