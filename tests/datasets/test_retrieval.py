"""Tests for RetrievalDataset: parsing, indices, dropped records, unreadable images."""
import json
import logging
import os.path as osp
from typing import List

import numpy as np
import pytest
from mmengine.logging import MMLogger
from PIL import Image

from r2d2lib.datasets.retrieval import RetrievalDataset
from r2d2lib.datasets.transforms import UnreadableImageError
from r2d2lib.registry import DATASETS

PIPELINE = [dict(type='LoadImage'),
            dict(type='PackInputs', algorithm_keys=['text', 'image_idx', 'text_idx'],
                 meta_keys=['img_path', 'image_id'])]


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def logs():
    logger = MMLogger.get_current_instance()
    handler = ListHandler()
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


@pytest.fixture(autouse=True)
def scope():
    from mmengine.registry import init_default_scope
    init_default_scope('r2d2lib')


def save_image(path, value: int = 100) -> None:
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)


def write_lines(path, lines) -> str:
    path.write_text(''.join(
        (line if isinstance(line, str) else json.dumps(line, ensure_ascii=False))
        + '\n' for line in lines), encoding='utf-8')
    return str(path)


@pytest.fixture
def root(tmp_path):
    (tmp_path / 'images').mkdir()
    for name in ('a', 'b', 'c'):
        save_image(tmp_path / 'images' / f'{name}.png')
    return tmp_path


def test_parsing_and_indices(root):
    write_lines(root / 'ann.jsonl', [
        {'image_path': 'images/b.png', 'text': '蓝色的大圆形'},
        '',
        {'image_path': 'images/a.png', 'text': ' 红色 '},
        {'image_path': 'images/b.png', 'text': '第二句'},
        {'image_path': str(root / 'images/c.png'), 'text': '绝对路径',
         'extra': 1},
    ])
    ds = RetrievalDataset('ann.jsonl', data_root=str(root))
    assert len(ds) == 4 and ds.num_texts == 4 and ds.num_images == 3
    assert ds.metainfo['num_images'] == 3 and ds.metainfo['num_texts'] == 4
    infos = [ds.get_data_info(i) for i in range(4)]
    assert [i['image_id'] for i in infos] == ['b', 'a', 'b', 'c']
    assert [i['image_idx'] for i in infos] == [0, 1, 0, 2]
    assert [i['text_idx'] for i in infos] == [0, 1, 2, 3]
    assert [i['text'] for i in infos] == ['蓝色的大圆形', '红色', '第二句', '绝对路径']
    assert infos[0]['img_path'] == osp.join(str(root), 'images/b.png')
    assert infos[3]['img_path'] == str(root / 'images/c.png')
    assert ds.num_missing_images == ds.num_empty_captions == 0


def test_built_from_registry_with_pipeline(root):
    write_lines(root / 'ann.jsonl', [{'image_path': 'images/a.png', 'text': 'x'}])
    ds = DATASETS.build(dict(type='RetrievalDataset', ann_file='ann.jsonl',
                             data_root=str(root), pipeline=PIPELINE))
    out = ds[0]
    assert out['inputs'].shape == (3, 8, 8)
    sample = out['data_samples']
    assert (sample.text, sample.image_idx, sample.text_idx) == ('x', 0, 0)
    assert sample.metainfo['image_id'] == 'a'


@pytest.mark.parametrize('bad,why', [
    ('{"image_path": "images/a.png", "text": ', 'invalid JSON'),
    ('["images/a.png", "x"]', 'expected a JSON object'),
    ('{"image_path": "images/a.png"}', 'missing key "text"'),
    ('{"text": "x"}', 'missing key "image_path"'),
    ('{"image_path": "images/a.png", "text": 3}', '"text" must be a string'),
    ('{"image_path": null, "text": "x"}', '"image_path" must be a string'),
])
def test_malformed_line_names_file_and_line(root, bad, why):
    ann = write_lines(root / 'broken.jsonl', [
        {'image_path': 'images/a.png', 'text': 'ok'}, '', bad])
    with pytest.raises(ValueError) as info:
        RetrievalDataset('broken.jsonl', data_root=str(root))
    assert f'{ann}, line 3' in str(info.value)
    assert why in str(info.value)


def test_missing_images_and_empty_captions_dropped(root, logs):
    write_lines(root / 'ann.jsonl', [
        {'image_path': 'images/a.png', 'text': 'a'},
        {'image_path': 'images/gone.png', 'text': 'g1'},
        {'image_path': 'images/b.png', 'text': '   '},
        {'image_path': 'images/gone.png', 'text': 'g2'},
        {'image_path': 'images/b.png', 'text': 'b'},
    ])
    ds = RetrievalDataset('ann.jsonl', data_root=str(root))
    assert ds.num_missing_images == 2 and ds.num_empty_captions == 1
    assert [ds.get_data_info(i)['text'] for i in range(len(ds))] == ['a', 'b']
    assert [ds.get_data_info(i)['image_idx'] for i in range(len(ds))] == [0, 1]
    assert ds.num_images == 2
    text = '\n'.join(logs)
    assert osp.join(str(root), 'images/gone.png') in text
    assert 'empty caption' in text


def corrupt_dataset(root, test_mode: bool) -> RetrievalDataset:
    (root / 'images' / 'bad.jpg').write_bytes(b'\xff\xd8\xff\xe0 garbage')
    write_lines(root / 'ann.jsonl', [
        {'image_path': 'images/a.png', 'text': 'good'},
        {'image_path': 'images/bad.jpg', 'text': 'bad'},
    ])
    return RetrievalDataset('ann.jsonl', data_root=str(root),
                            pipeline=PIPELINE, test_mode=test_mode)


def test_corrupt_image_skipped_in_training(root, logs):
    ds = corrupt_dataset(root, test_mode=False)
    for _ in range(3):
        out = ds[1]
        assert out['data_samples'].text == 'good'
    assert ds.num_unreadable_images == 1
    bad = osp.join(str(root), 'images/bad.jpg')
    assert any(bad in m and 'unreadable' in m for m in logs)


def test_corrupt_image_fails_in_test_mode(root):
    ds = corrupt_dataset(root, test_mode=True)
    assert ds[0]['data_samples'].text == 'good'
    with pytest.raises(UnreadableImageError) as info:
        ds[1]
    assert 'bad.jpg' in str(info.value)
