"""The shared part of every r2d2lib dataset: the pair-record contract and bad-data handling.

One place decides what happens to bad data, for every loader:

* malformed annotation (bad JSON, missing key, bad label, ...): ``ValueError``
  at construction naming the file and the 1-based line (:func:`annotation_error`);
* caption that is not valid Unicode (a lone surrogate, which JSON's ``\ud800`` escapes
  produce): ``ValueError`` naming the file and line;
* empty or whitespace-only caption: the record is dropped, counted
  (``num_empty_captions``) and logged with its file and line (up to
  ``MAX_LOGGED_PATHS``), and listed in the data report (``empty_caption``);
* listed image missing: the record is dropped, counted (``num_missing_images``)
  and logged with up to ``MAX_LOGGED_PATHS`` paths (data report: ``missing``);
* image unreadable or over the pixel limit when the pipeline loads it
  (``UnreadableImageError``, ``ImageTooLargeError``): skipped in training
  (mmengine draws another index; ``num_unreadable_images`` counts distinct files
  per process; the skip rides to the main process with the next sample, see
  :mod:`r2d2lib.datasets.data_report`), an error in test mode.

:class:`PairCollector` assigns the indices of the record contract (see
docs/datasets.md): ``image_idx`` consecutive over distinct images, ``text_idx``
consecutive over distinct texts, both in order of first appearance among kept
records, so identical on every rank.
"""
from __future__ import annotations

import logging
import os
import os.path as osp
from typing import Any, Dict, Hashable, List, Optional, Sequence, Set, Union

from mmengine.dataset import BaseDataset
from mmengine.logging import print_log
from tqdm import tqdm

from r2d2lib.io.images import UnreadableImageError
from r2d2lib.io.texts import invalid_unicode

from .data_report import DataReport, Event, attach_skips

MAX_LOGGED_PATHS = 20
PROGRESS_MIN_BYTES = 64 << 20  # annotation files at least this large show a progress bar


def warn(msg: str) -> None:
    """Log a warning through the current MMLogger."""
    print_log(msg, logger='current', level=logging.WARNING)


def annotation_error(source: str, lineno: Optional[int], problem: str) -> ValueError:
    """The error for a malformed annotation: ``'<file>, line <n>: <problem>'``."""
    where = f'{source}, line {lineno}' if lineno is not None else str(source)
    return ValueError(f'{where}: {problem}')


def check_unicode(text: str, source: str, lineno: Optional[int]) -> None:
    """Raise ``ValueError`` (file, line) if ``text`` holds a lone surrogate (not encodable text)."""
    why = invalid_unicode(text)
    if why is not None:
        raise annotation_error(source, lineno, f'the caption is not valid Unicode: {why}')


def place(source: str, lineno: Optional[int]) -> str:
    """``'<file>, line <n>'`` (or the file alone without a line number)."""
    return f'{source}, line {lineno}' if lineno is not None else str(source)


def format_paths(paths: Sequence[str], limit: int = MAX_LOGGED_PATHS) -> str:
    """Up to ``limit`` paths, one per line, then how many more."""
    shown = '\n  '.join(paths[:limit])
    more = len(paths) - limit
    return f'\n  {shown}' + (f'\n  ... and {more} more' if more > 0 else '')


class PairCollector:
    """Builds the ``data_list`` of image-text pair records, dropping and counting bad ones.

    Args:
        source: The annotation file, named in log messages.
        progress: Show a progress bar of the records seen.
    """

    def __init__(self, source: str, progress: bool = False) -> None:
        self.source = source
        self._bar = tqdm(desc=f'reading {osp.basename(source)}', unit=' records', mininterval=2,
                         disable=not progress)
        self.records: List[dict] = []
        self.num_empty_captions = 0
        self.empty_caption_places: List[str] = []
        self.num_missing_images = 0
        self.missing_paths: List[str] = []
        self._exists: Dict[str, bool] = {}
        self._image_idx: Dict[str, int] = {}
        self._text_idx: Dict[Hashable, int] = {}

    @property
    def num_images(self) -> int:
        """Distinct images among kept records (gallery-only ones included)."""
        return len(self._image_idx)

    @property
    def num_texts(self) -> int:
        """Distinct texts among kept records."""
        return len(self._text_idx)

    def image_available(self, img_path: str, available: Optional[bool] = None) -> bool:
        """Whether ``img_path`` can be used; checked once per path, misses remembered.

        ``available`` overrides the file check (images stored inside a file).
        """
        if img_path not in self._exists:
            ok = osp.isfile(img_path) if available is None else bool(available)
            self._exists[img_path] = ok
            if not ok:
                self.missing_paths.append(img_path)
        return self._exists[img_path]

    def drop_empty_caption(self, lineno: Optional[int] = None, where: Optional[str] = None) -> None:
        """Count a record dropped for an empty caption at ``where`` (default: the source), ``lineno``."""
        self.num_empty_captions += 1
        self.empty_caption_places.append(place(where or self.source, lineno))
        self._bar.update()

    def add_pair(self, img_path: str, text: str, text_key: Optional[Hashable] = None,
                 available: Optional[bool] = None, lineno: Optional[int] = None,
                 where: Optional[str] = None, **fields: Any) -> Optional[dict]:
        """Add one (image, text) pair; returns the record or None if dropped.

        Args:
            img_path: Image path (or ``'<file>#<id>'`` for images inside a file).
            text: The caption; stripped, dropped if empty.
            text_key: Identity of the text: records with the same key share
                ``text_idx`` (a query with several positive images). None: a
                text of its own.
            available: Override of the file-exists check.
            lineno: The caption's 1-based line, named for an empty or invalid caption.
            where: The caption's file if not the collector's source.
            **fields: Extra record fields.

        Raises:
            ValueError: the caption is not valid Unicode (file, line).
        """
        check_unicode(text, where or self.source, lineno)
        text = text.strip()
        if not text:
            self.drop_empty_caption(lineno, where)
            return None
        self._bar.update()
        if not self.image_available(img_path, available):
            self.num_missing_images += 1
            return None
        key = ('record', len(self.records)) if text_key is None else ('key', text_key)
        record = dict(img_path=img_path, text=text,
                      image_idx=self._image_idx.setdefault(img_path, len(self._image_idx)),
                      text_idx=self._text_idx.setdefault(key, len(self._text_idx)), **fields)
        self.records.append(record)
        return record

    def add_gallery_image(self, img_path: str, available: Optional[bool] = None,
                          **fields: Any) -> Optional[dict]:
        """Add a candidate image no text refers to (``text=None``, ``text_idx=-1``).

        Nothing is added for an image already in a pair record.
        """
        if img_path in self._image_idx or not self.image_available(img_path, available):
            return None
        record = dict(img_path=img_path, text=None, image_idx=len(self._image_idx), text_idx=-1,
                      **fields)
        self._image_idx[img_path] = record['image_idx']
        self.records.append(record)
        return record

    def data_report(self) -> DataReport:
        """What was dropped, as the rows ``empty_caption`` and ``missing`` of a data report."""
        report = DataReport()
        for where in self.empty_caption_places:
            report.add('empty_caption', where)
        for path in self.missing_paths:
            report.add('missing', path)
        return report

    def report(self) -> None:
        """Close the progress bar; log what was dropped (empty captions by file and line, missing images)."""
        self._bar.close()
        if self.num_empty_captions:
            warn(f'{self.source}: dropped {self.num_empty_captions} record(s) with an empty caption:'
                 f'{format_paths(self.empty_caption_places)}')
        if self.missing_paths:
            warn(f'{self.source}: {len(self.missing_paths)} listed image(s) do not exist; dropped '
                 f'{self.num_missing_images} record(s):{format_paths(self.missing_paths)}')


class SkipUnreadableDataset(BaseDataset):
    """A BaseDataset whose pipeline skips unreadable images in training and fails in test mode.

    ``num_unreadable_images`` is counted per process: with DataLoader workers
    each worker keeps its own count (the warnings are logged either way).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.num_unreadable_images = 0
        self._unreadable_paths: Set[str] = set()
        self._pending_skips: List[Event] = []
        if not hasattr(self, 'data_report'):
            self.data_report = DataReport()
        super().__init__(*args, **kwargs)

    def __getitem__(self, idx: int) -> Any:
        """The sample of ``idx`` (another one if its image is skipped), carrying the skips made.

        Images skipped while fetching it travel in the sample's metainfo (``data_skips``) to the
        main process, where :class:`~r2d2lib.datasets.data_report.DataReportHook` counts them.
        """
        data = super().__getitem__(idx)
        if self._pending_skips and attach_skips(data, self._pending_skips):
            self._pending_skips = []
        return data

    def resolve(self, path: Optional[str]) -> Optional[str]:
        """``path`` joined to ``data_root`` unless absolute (None stays None)."""
        if path is None or osp.isabs(path):
            return path
        return osp.join(self.data_root or '', path)

    def image_path(self, name: str) -> str:
        """Full path of an image named relative to ``data_prefix['img_path']``."""
        return osp.join(self.data_prefix.get('img_path', '') or '', name)

    def prepare_data(self, idx: int) -> Any:
        """Run the pipeline on record ``idx``; None if its image is unreadable.

        In test mode an unreadable image raises instead: skipping it would
        bias the evaluation.
        """
        data_info = self.get_data_info(idx)
        if data_info.get('img_path') in self._unreadable_paths:
            return None
        try:
            return self.pipeline(data_info)
        except UnreadableImageError as err:
            if self.test_mode:
                source = self.ann_file or self.data_root
                raise type(err)(
                    err.path, f'{err.reason} (record {idx} of {source}; test mode does not skip images, '
                    'as that would bias the evaluation: fix or remove this image)', err.category) from err
            self._unreadable_paths.add(err.path)
            self.num_unreadable_images += 1
            self._pending_skips.append((err.category, err.path, err.reason))
            what = 'too large' if err.category == 'too_large' else 'unreadable'
            warn(f'skipping {what} image {err.path} ({err.reason}); {self.num_unreadable_images} '
                 'image(s) skipped so far in this process')
            return None


class ImageTextDataset(SkipUnreadableDataset):
    """Base of the image-text datasets: subclasses fill a :class:`PairCollector`.

    Subclasses implement :meth:`collect_pairs`. Records follow the contract
    of docs/datasets.md; ``num_images`` and ``num_texts`` are properties and
    ``metainfo`` keys; ``num_empty_captions`` and ``num_missing_images`` count
    dropped records.
    """

    def __init__(self, ann_file: str = '', data_root: str = '',
                 pipeline: Sequence[Union[dict, Any]] = (), test_mode: bool = False,
                 **kwargs: Any) -> None:
        self.data_report = DataReport()
        self.num_missing_images = 0
        self.num_empty_captions = 0
        self._num_images = 0
        self._num_texts = 0
        super().__init__(ann_file=ann_file, data_root=data_root, pipeline=list(pipeline),
                         test_mode=test_mode, **kwargs)

    @property
    def num_images(self) -> int:
        """Number of distinct images among the loaded records."""
        return self._num_images

    @property
    def num_texts(self) -> int:
        """Number of distinct texts among the loaded records."""
        return self._num_texts

    def full_init(self) -> None:
        """Load annotations, then add ``num_images``/``num_texts`` to metainfo."""
        if self._fully_initialized:
            return
        super().full_init()
        self._metainfo.update(num_images=self._num_images, num_texts=self._num_texts)

    def load_data_list(self) -> List[dict]:
        """Collect the pair records, then log and count what was dropped."""
        big = osp.isfile(self.ann_file) and os.path.getsize(self.ann_file) >= PROGRESS_MIN_BYTES
        collector = PairCollector(self.ann_file, progress=big)
        self.collect_pairs(collector)
        collector.report()
        self.data_report = collector.data_report()
        self.num_empty_captions = collector.num_empty_captions
        self.num_missing_images = collector.num_missing_images
        self._num_images = collector.num_images
        self._num_texts = collector.num_texts
        if not collector.records:
            raise ValueError(f'{self.ann_file}: no usable records ({collector.num_empty_captions} empty '
                             f'caption(s), {collector.num_missing_images} record(s) with a missing image '
                             'dropped; check data_root and data_prefix)')
        return collector.records

    def collect_pairs(self, collector: PairCollector) -> None:
        """Parse the annotations into ``collector`` (subclasses)."""
        raise NotImplementedError
