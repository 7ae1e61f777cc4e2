"""ZeroShotClassificationDataset: class folders, Chinese class names, prompt templates."""
import numpy as np
import pytest
from mmengine.dataset import Compose

from r2d2lib.datasets.transforms import UnreadableImageError
from r2d2lib.datasets.zero_shot import DEFAULT_TEMPLATES

from . import miniature as mini
from .helpers import build, column

PIPELINE = [dict(type='LoadImage'), dict(type='PackInputs', meta_keys=['img_path'])]


@pytest.mark.parametrize('mapping_file', [False, True])
def test_records_classes_templates(tmp_path, mapping_file):
    kw = mini.write_zero_shot(tmp_path, corrupt=True, mapping_file=mapping_file)['test']
    ds = build('ZeroShotClassificationDataset', kw, pipeline=PIPELINE)
    assert column(ds, 'gt_label') == [0, 0, 0, 1, 1, 2, 2]  # notes.txt is not an image
    assert [p.rsplit('/', 2)[-2:] for p in column(ds, 'img_path')][:3] == [
        ['000', 'image_0000.jpg'], ['000', 'image_0001.jpg'], ['000', 'image_bad.jpg']]
    assert ds.metainfo['classes'] == ('猫', '狗', '汽车')
    assert ds.metainfo['templates'] == DEFAULT_TEMPLATES and '一张{}的照片。' in DEFAULT_TEMPLATES
    out = ds[3]
    assert out['data_samples'].gt_label.tolist() == [1]
    assert np.array_equal(out['inputs'].permute(1, 2, 0).numpy(),
                          Compose([dict(type='LoadImage')])({'img_path': column(ds, 'img_path')[3]})['img'])
    with pytest.raises(UnreadableImageError, match='image_bad.jpg'):
        ds[2]  # test mode (the default) does not skip


def test_unreadable_skipped_outside_test_mode(tmp_path):
    kw = mini.write_zero_shot(tmp_path, corrupt=True)['test']
    ds = build('ZeroShotClassificationDataset', kw, pipeline=PIPELINE, test_mode=False)
    assert ds[2] is not None and ds.num_unreadable_images == 1


def test_templates_from_list_and_file(tmp_path):
    kw = mini.write_zero_shot(tmp_path, templates=['{}的照片', '这是{}'])['test']
    ds = build('ZeroShotClassificationDataset', kw)
    assert ds.metainfo['templates'] == ('{}的照片', '这是{}')
    ds = build('ZeroShotClassificationDataset', {**kw, 'templates': ['一张{}。']})
    assert ds.metainfo['templates'] == ('一张{}。',)
    (tmp_path / 'templates.txt').write_text('{}的照片\n没有占位符\n', 'utf-8')
    with pytest.raises(ValueError, match=r'templates.txt, line 2: template .没有占位符. must contain'):
        build('ZeroShotClassificationDataset', kw)
    with pytest.raises(ValueError, match='must contain exactly one'):
        build('ZeroShotClassificationDataset', {**kw, 'templates': ['{}和{}']})


def test_class_file_errors(tmp_path):
    kw = mini.write_zero_shot(tmp_path)['test']
    names = tmp_path / 'label_cn.txt'
    names.write_text('猫\n狗\n', 'utf-8')
    with pytest.raises(ValueError, match='2 class name.s. for 3 class folder'):
        build('ZeroShotClassificationDataset', kw)
    names.write_text('000\t猫\n001\t狗\n003\t车\n', 'utf-8')
    with pytest.raises(ValueError, match=rf"{names}, line 3: no class folder '003'"):
        build('ZeroShotClassificationDataset', kw)
    names.write_text('000\t猫\n001\t狗\n', 'utf-8')
    with pytest.raises(ValueError, match=r"no class name for folder.s. \['002'\]"):
        build('ZeroShotClassificationDataset', kw)
    names.write_text('000\t猫\n001\t \n002\t车\n', 'utf-8')
    with pytest.raises(ValueError, match=rf"{names}, line 2: empty class name"):
        build('ZeroShotClassificationDataset', kw)
