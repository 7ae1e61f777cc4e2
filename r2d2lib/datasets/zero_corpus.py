"""Zero pre-training corpus: one row per image with title, content and image query.

Each row carries the image (``image_path``, relative to the image folder)
and the attributes of the paper's Appendix A: ``title``, ``content``,
``query`` (ImageQuery), ``show``, ``click``, ``url`` (ImageUrl). Column names
are matched case-insensitively, with the aliases in ``FIELD_ALIASES``. The
annotations may be JSON-lines, CSV (with a header) or Parquet (pyarrow).

Every epoch each image is paired with one of its non-empty texts, chosen by
:func:`~r2d2lib.datasets.text_choice.choose_text` from ``(seed, epoch,
index)``; a row whose three texts are all empty is dropped and counted.
"""
from __future__ import annotations

import csv
import os.path as osp
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

from r2d2lib.registry import DATASETS

from .annotation_files import iter_json_lines
from .base import ImageTextDataset, PairCollector, annotation_error, check_unicode
from .text_choice import SharedEpoch, choose_text

TEXT_FIELDS = ('title', 'content', 'query')
FIELD_ALIASES: Dict[str, Tuple[str, ...]] = {
    'image_path': ('image_path', 'image', 'img_path', 'filename', 'file_name'),
    'title': ('title',),
    'content': ('content',),
    'query': ('query', 'imagequery', 'image_query'),
    'show': ('show',),
    'click': ('click',),
    'url': ('url', 'imageurl', 'image_url'),
}

Row = Dict[str, Any]


def normalise_row(row: Row, where: str, lineno: Optional[int],
                  require_image: bool = True) -> Row:
    """Map a row's columns onto ``FIELD_ALIASES`` names and check the texts.

    Returns ``image_path``, ``texts`` (non-empty stripped texts, in
    title/content/query order), ``text_sources`` (their field names) and
    ``show``/``click``/``url`` (None when absent). Raises ``ValueError``
    (file, line) for a missing or empty ``image_path`` or a text that is not a
    string.
    """
    lowered = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    out: Row = {}
    for field, aliases in FIELD_ALIASES.items():
        out[field] = next((lowered[a] for a in aliases if a in lowered), None)
    image = out.pop('image_path')
    if require_image and (not isinstance(image, str) or not image.strip()):
        raise annotation_error(where, lineno, f'missing or empty image path (one of '
                                              f'{", ".join(FIELD_ALIASES["image_path"])})')
    texts, sources = [], []
    for field in TEXT_FIELDS:
        value = out.pop(field)
        if value is not None and not isinstance(value, str):
            raise annotation_error(where, lineno, f'"{field}" must be a string, got '
                                                  f'{type(value).__name__}')
        if value and value.strip():
            texts.append(value.strip())
            sources.append(field)
    return dict(image_path=image, texts=texts, text_sources=sources, **out)


def iter_table_rows(path: str) -> Iterator[Tuple[Optional[int], str, Row]]:
    """Yield ``(lineno, where, row)`` of a JSON-lines, CSV or Parquet table.

    ``where`` names the file (Parquet: ``'<file>, row <n>'`` with ``lineno``
    None). Malformed lines raise ``ValueError`` with the file and line.
    """
    ext = osp.splitext(path)[1].lower()
    if ext in ('.jsonl', '.json'):
        for lineno, record in iter_json_lines(path):
            yield lineno, path, record
    elif ext in ('.csv', '.tsv'):
        with open(path, encoding='utf-8-sig', newline='') as f:
            reader = csv.DictReader(f, delimiter='\t' if ext == '.tsv' else ',')
            if not reader.fieldnames:
                raise annotation_error(path, 1, 'empty file: expected a header row')
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    raise annotation_error(path, reader.line_num, f'expected {len(reader.fieldnames)} '
                                                                  'fields as in the header')
                yield reader.line_num, path, row
    elif ext in ('.parquet', '.pq'):
        import pyarrow.parquet as pq
        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=8192):
            for row in batch.to_pylist():
                number += 1
                yield None, f'{path}, row {number}', row
    else:
        raise ValueError(f'{path}: unknown annotation format {ext!r} (expected .jsonl, .csv, '
                         '.tsv or .parquet)')


@DATASETS.register_module()
class ZeroCorpusDataset(ImageTextDataset):
    """Zero corpus (2.3M / 23M) from a table plus an image folder, one record per image.

    Records: ``img_path``, ``texts`` (the non-empty texts), ``text_sources``,
    ``show``, ``click``, ``url``, ``image_idx``, ``text_idx`` (= the record's
    position: each image gives one text per epoch, so ``num_texts`` equals the
    number of records). :meth:`get_data_info` adds ``text`` (the text drawn for
    the current epoch) and ``text_source``.

    The draw is ``choose_text(seed, epoch, index, len(texts))``. The epoch
    comes from :meth:`set_epoch`; use ``sampler=dict(type='DatasetEpochSampler',
    shuffle=True)`` so that mmengine sets it every epoch (in DataLoader workers
    too).

    Args:
        ann_file: JSON-lines, CSV or Parquet table.
        seed: Seed of the text draw (independent of the Runner's seed).
        text_fields: Which of ``title``, ``content``, ``query`` may be drawn.
    """

    def __init__(self, ann_file: str, data_root: str = '', seed: int = 0,
                 text_fields: Sequence[str] = TEXT_FIELDS, **kwargs: Any) -> None:
        unknown = set(text_fields) - set(TEXT_FIELDS)
        if unknown or not text_fields:
            raise ValueError(f'text_fields must be a non-empty subset of {TEXT_FIELDS}, got '
                             f'{tuple(text_fields)}')
        self.seed = int(seed)
        self.text_fields = tuple(text_fields)
        self._epoch = SharedEpoch()
        super().__init__(ann_file=ann_file, data_root=data_root, **kwargs)

    @property
    def epoch(self) -> int:
        """The epoch the texts are drawn for."""
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Draw texts for ``epoch`` from now on (shared with DataLoader workers)."""
        self._epoch.set(epoch)

    def collect_pairs(self, collector: PairCollector) -> None:
        """One record per row with at least one non-empty text."""
        for lineno, where, row in iter_table_rows(self.ann_file):
            entry = normalise_row(row, where, lineno)
            keep = [i for i, s in enumerate(entry['text_sources']) if s in self.text_fields]
            texts = [entry['texts'][i] for i in keep]
            for text in texts:
                check_unicode(text, where, lineno)
            if not texts:
                collector.drop_empty_caption(lineno, where)
                continue
            collector.add_pair(self.image_path(entry['image_path'].strip()), texts[0],
                               lineno=lineno, where=where,
                               texts=texts, text_sources=[entry['text_sources'][i] for i in keep],
                               show=entry['show'], click=entry['click'], url=entry['url'])

    def get_data_info(self, idx: int) -> dict:
        """Record ``idx`` with ``text`` drawn for the current epoch."""
        info = super().get_data_info(idx)
        choice = choose_text(self.seed, self.epoch, idx, len(info['texts']))
        info['text'] = info['texts'][choice]
        info['text_source'] = info['text_sources'][choice]
        return info

