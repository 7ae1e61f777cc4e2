"""Tests for LoadImage, pipeline config spelling and Resize/PIL equivalence."""
import io
import pickle

import numpy as np
import pytest
import torch
from mmengine.dataset import Compose
from mmengine.registry import init_default_scope
from PIL import Image

from r2d2lib.datasets.transforms import LoadImage, UnreadableImageError

RNG = np.random.default_rng(0)


def random_image(h: int = 20, w: int = 30) -> np.ndarray:
    return RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.fixture
def png(tmp_path):
    arr = random_image()
    path = tmp_path / 'a.png'
    Image.fromarray(arr).save(path)
    return path, arr


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('r2d2lib')


def test_load_image_rgb_uint8(png):
    path, arr = png
    out = LoadImage()({'img_path': str(path)})
    assert out['img'].dtype == np.uint8 and out['img'].flags.writeable
    assert np.array_equal(out['img'], arr)
    assert out['img_shape'] == out['ori_shape'] == (20, 30)


@pytest.mark.parametrize('mode', ['L', 'RGBA', 'P', 'I;16'])
def test_load_image_converts_modes(tmp_path, mode):
    path = tmp_path / 'm.png'
    Image.fromarray(random_image()).convert(mode).save(path)
    img = LoadImage()({'img_path': str(path)})['img']
    assert img.shape == (20, 30, 3) and img.dtype == np.uint8


def truncated_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(random_image(64, 64)).save(buf, format='JPEG')
    return buf.getvalue()[: len(buf.getvalue()) // 2]


@pytest.mark.parametrize('content', [b'not an image at all', b'', None,
                                     truncated_jpeg()])
def test_unreadable_image_names_path(tmp_path, content):
    path = tmp_path / 'bad.jpg'
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UnreadableImageError) as info:
        LoadImage()({'img_path': str(path)})
    assert info.value.path == str(path) and str(path) in str(info.value)
    copy = pickle.loads(pickle.dumps(info.value))  # crosses DataLoader workers
    assert copy.path == info.value.path and str(copy) == str(info.value)


def test_pipeline_from_config_plain_names(png):
    path, _ = png
    pipeline = Compose([
        dict(type='LoadImage'),
        dict(type='Resize', scale=(32, 32), keep_ratio=False,
             interpolation='bicubic', backend='pillow'),
        dict(type='PackInputs', algorithm_keys=['text', 'image_idx', 'text_idx'],
             meta_keys=['img_path', 'image_id']),
    ])
    out = pipeline({'img_path': str(path), 'text': '红色', 'image_idx': 3,
                    'text_idx': 7, 'image_id': 'a'})
    assert out['inputs'].dtype == torch.uint8
    assert out['inputs'].shape == (3, 32, 32)
    sample = out['data_samples']
    assert (sample.text, sample.image_idx, sample.text_idx) == ('红色', 3, 7)
    assert sample.metainfo['img_path'] == str(path)
    assert sample.metainfo['image_id'] == 'a'


def test_training_transforms_and_scoped_spelling(png):
    path, _ = png
    pipeline = Compose([
        dict(type='LoadImage'),
        dict(type='RandomResizedCrop', scale=16, interpolation='bicubic',
             backend='pillow'),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='mmpretrain.PackInputs', algorithm_keys=['text']),
    ])
    out = pipeline({'img_path': str(path), 'text': 't'})
    assert out['inputs'].shape == (3, 16, 16)
    assert out['data_samples'].text == 't'


@pytest.mark.parametrize('src,size', [((20, 30), 32), ((64, 48), 24),
                                      ((37, 37), 37), ((224, 300), 224)])
def test_resize_pillow_matches_pil_bicubic(src, size):
    arr = random_image(*src)
    resize = Compose([dict(type='Resize', scale=(size, size), keep_ratio=False,
                           interpolation='bicubic', backend='pillow')])
    ours = resize({'img': arr.copy()})['img']
    ref = np.asarray(Image.fromarray(arr).resize((size, size), Image.BICUBIC))
    assert ours.shape == (size, size, 3)
    assert np.array_equal(ours, ref)  # bit-exact
