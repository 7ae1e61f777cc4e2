"""ImageCaptionsDataset: every image once with all its captions, parsed by the retrieval loaders."""
import json

import pytest
from mmengine.registry import init_default_scope

from r2d2lib.registry import DATASETS

init_default_scope('r2d2lib')


def test_toy_test_split_grouped_by_image(toy_data, pipeline32):
    pipeline = [*pipeline32[:2], dict(type='PackInputs', algorithm_keys=['text', 'image_idx', 'captions'])]
    dataset = DATASETS.build(dict(type='ImageCaptionsDataset', pipeline=pipeline, dataset=dict(
        type='RetrievalDataset', data_root=str(toy_data), ann_file='test.jsonl')))
    pairs = [json.loads(line) for line in (toy_data / 'test.jsonl').read_text(encoding='utf-8').splitlines()]
    by_image = {}
    for pair in pairs:
        by_image.setdefault(pair['image_path'], []).append(pair['text'])
    assert len(dataset) == len(by_image) == 8
    first = dataset.get_data_info(0)
    assert first['captions'] == next(iter(by_image.values())) and len(first['captions']) == 2
    assert first['text'] == first['captions'][0]
    sample = dataset[3]['data_samples']
    assert sample.captions == dataset.get_data_info(3)['captions'] and sample.image_idx == 3
    assert dataset.num_texts == len(pairs)


def test_aic_icc_captions_and_bad_lines(tmp_path):
    from PIL import Image
    (tmp_path / 'images').mkdir()
    for name in ('a.jpg', 'b.jpg'):
        Image.new('RGB', (8, 8)).save(tmp_path / 'images' / name)
    entries = [dict(image_id='a.jpg', caption=['一个人', '两个人', ' ']),
               dict(image_id='b.jpg', caption=['一只狗']),
               dict(image_id='missing.jpg', caption=['一只猫'])]
    ann = tmp_path / 'captions.json'
    ann.write_text(json.dumps(entries, ensure_ascii=False), encoding='utf-8')
    dataset = DATASETS.build(dict(type='ImageCaptionsDataset', dataset=dict(
        type='AICICCDataset', ann_file=str(ann), data_prefix=dict(img_path=str(tmp_path / 'images')))))
    captions = [dataset.get_data_info(i)['captions'] for i in range(len(dataset))]
    assert captions == [['一个人', '两个人'], ['一只狗']]
    assert dataset.source.num_missing_images == 1 and dataset.source.num_empty_captions == 1
    ann.write_text('[{"image_id": "a.jpg", "caption": "not a list"}]', encoding='utf-8')
    with pytest.raises(ValueError, match='captions.json.*caption'):
        DATASETS.build(dict(type='ImageCaptionsDataset',
                            dataset=dict(type='AICICCDataset', ann_file=str(ann))))
