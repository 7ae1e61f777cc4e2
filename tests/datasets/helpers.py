"""Test helpers for the dataset tests: log capture, building, record views."""
import logging
from typing import Any, Dict, List

from mmengine.logging import MMLogger

from r2d2lib.registry import DATASETS

PIPELINE = [dict(type='LoadImage'),
            dict(type='PackInputs', algorithm_keys=['text', 'image_idx', 'text_idx'],
                 meta_keys=['img_path'])]


class ListHandler(logging.Handler):
    """Keeps every message logged to the current MMLogger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def attach_log_capture() -> ListHandler:
    handler = ListHandler()
    MMLogger.get_current_instance().addHandler(handler)
    return handler


def detach_log_capture(handler: ListHandler) -> None:
    MMLogger.get_current_instance().removeHandler(handler)


def build(type_: str, kwargs: Dict[str, Any], **extra: Any):
    """Build a registered dataset with the test pipeline."""
    return DATASETS.build(dict(dict(type=type_, pipeline=PIPELINE), **kwargs, **extra))


def infos(ds) -> List[dict]:
    return [ds.get_data_info(i) for i in range(len(ds))]


def column(ds, key: str) -> list:
    return [info[key] for info in infos(ds)]


def check_contract(ds) -> None:
    """The record contract of docs/datasets.md holds for ``ds``."""
    records = infos(ds)
    image_idx = {r['image_idx'] for r in records}
    text_idx = {r['text_idx'] for r in records if r['text'] is not None}
    assert image_idx == set(range(ds.num_images)) == set(range(ds.metainfo['num_images']))
    assert text_idx == set(range(ds.num_texts)) == set(range(ds.metainfo['num_texts']))
    by_path: Dict[str, int] = {}
    for r in records:
        assert by_path.setdefault(r['img_path'], r['image_idx']) == r['image_idx']
        assert isinstance(r['img_path'], str)
        if r['text'] is None:
            assert r['text_idx'] == -1 and ds.test_mode
        else:
            assert isinstance(r['text'], str) and r['text'] == r['text'].strip() and r['text']
    assert len(by_path) == ds.num_images
