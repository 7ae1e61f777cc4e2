"""Downstream loaders on miniature copies of the released layouts: ICR/IQR/ICM/IQM,
Flickr30k-CN/CNA, COCO-CN, AIC-ICC, MUGE (records, ids, positives, drops, errors)."""
import io
import json
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from r2d2lib.datasets.caption_files import join_segmented
from r2d2lib.datasets.transforms import LoadImage, UnreadableImageError

from . import miniature as mini
from .helpers import build, check_contract, column, infos


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert('RGB'))


def chw(out) -> np.ndarray:
    return out['inputs'].permute(1, 2, 0).numpy()


# ----------------------------------------------------------------- ICR / IQR / ICM / IQM
@pytest.mark.parametrize('task', ['icr', 'iqr'])
def test_retrieval_official_layout(tmp_path, task, logs):
    kw = mini.write_zero_downstream(tmp_path, task, corrupt=True)
    ds = build('RetrievalDataset', kw['train'])
    check_contract(ds)
    image_dir = osp.join(str(tmp_path), 'IQR_IQM_ICR_ICM_images')
    assert column(ds, 'img_path') == [osp.join(image_dir, f'{task}_{i:05d}.jpg') for i in range(4)] + [
        osp.join(image_dir, f'{task}_bad.jpg')]
    assert (ds.num_images, ds.num_texts, ds.num_missing_images, ds.num_empty_captions) == (5, 5, 1, 1)
    assert osp.join(image_dir, f'{task}_missing.jpg') in '\n'.join(logs)
    val = build('RetrievalDataset', kw['val'], test_mode=True)
    assert val.num_images == 4 and column(val, 'image_id') == [f'{task}_{100 + i:05d}' for i in range(4)]
    # Without stripping, the released absolute paths point nowhere: every record is dropped.
    with pytest.raises(ValueError, match='no usable records .0 empty caption.s., 4 record.s. with a missing'):
        build('RetrievalDataset', {**kw['val'], 'strip_image_dirs': False})


@pytest.mark.parametrize('task', ['icm', 'iqm'])
def test_matching_labels(tmp_path, task):
    kw = mini.write_zero_downstream(tmp_path, task, corrupt=True)
    ds = build('MatchingDataset', kw['train'])
    check_contract(ds)
    assert column(ds, 'label') == [0, 1, 0, 1, 1]
    assert ds.metainfo['num_positives'] == 3 and ds.metainfo['num_negatives'] == 2
    assert column(build('MatchingDataset', kw['val']), 'label') == [1, 0, 1, 0]


@pytest.mark.parametrize('label,ok', [(1, True), (0, True), ('1', True), ('yes', False), (2, False),
                                      (True, False), (1.0, False), (None, False), ([1], False)])
def test_matching_label_values(tmp_path, label, ok):
    kw = mini.write_zero_downstream(tmp_path, 'icm')
    ann = tmp_path / kw['train']['ann_file']
    lines = ann.read_text('utf-8').splitlines()
    row = json.loads(lines[1])
    row['label'] = label
    lines[1] = json.dumps(row)
    ann.write_text('\n'.join(lines) + '\n', 'utf-8')
    if ok:
        assert build('MatchingDataset', kw['train']).get_data_info(1)['label'] == int(label)
    else:
        with pytest.raises(ValueError, match=rf'{ann}, line 2: "label" must be 0 or 1'):
            build('MatchingDataset', kw['train'])


# ----------------------------------------------------------------- Flickr30k-CN / CNA
def test_join_segmented():
    assert join_segmented(' 一只 黑色 的 狗 在 iPhone 6 旁边 ') == '一只黑色的狗在iPhone 6旁边'
    assert join_segmented('a  b，c') == 'a b，c'


def test_flickr30k_cn_visualsearch_layout(tmp_path, logs):
    kw = mini.write_flickr30k_cn(tmp_path, corrupt=True)
    ds = build('Flickr30kCNDataset', kw['train'])
    check_contract(ds)
    assert (len(ds), ds.num_images, ds.num_texts) == (16, 4, 16)
    assert (ds.num_missing_images, ds.num_empty_captions) == (1, 1)
    first = ds.get_data_info(0)
    assert first['text'] == '草地上有一只红色的小狗train00'
    assert first['caption_id'] == '1000092795#zhb#0' and first['image_id'] == '1000092795'
    assert first['img_path'] == osp.join(str(tmp_path), 'flickr30k-images', '1000092795.jpg')
    assert column(ds, 'image_idx') == [0] * 5 + [1] * 5 + [2] * 5 + [3]
    assert osp.join(str(tmp_path), 'flickr30k-images', '1000000002.jpg') in '\n'.join(logs)
    # Unreadable (truncated) image: skipped in training, an error in test mode.
    out = ds[15]
    assert out['data_samples'].image_idx != 3 and ds.num_unreadable_images == 1
    assert any('1000000001.jpg' in m and 'unreadable' in m for m in logs)
    with pytest.raises(UnreadableImageError, match='1000000001.jpg'):
        build('Flickr30kCNDataset', kw['train'], test_mode=True)[15]


def test_flickr30k_cn_test_split_gallery(tmp_path):
    kw = mini.write_flickr30k_cn(tmp_path, gallery_only=2)
    ds = build('Flickr30kCNDataset', kw['test'], test_mode=True)
    check_contract(ds)
    assert (len(ds), ds.num_images, ds.num_texts) == (17, 5, 15)
    gallery = [r for r in infos(ds) if r['text'] is None]
    assert [(r['image_id'], r['image_idx'], r['text_idx']) for r in gallery] == [
        ('2000000000', 3, -1), ('2000000001', 4, -1)]
    assert ds.get_data_info(0)['text'] == '草地上有一只红色的小狗test00'
    # Outside test mode, only captioned images.
    assert build('Flickr30kCNDataset', kw['test']).num_images == 3
    # Captions of images outside the split list are ignored and counted.
    (tmp_path / 'one.txt').write_text('1000094796\n', 'utf-8')
    one = build('Flickr30kCNDataset', {**kw['test'], 'image_list': 'one.txt'}, test_mode=True)
    assert one.num_outside_split == 10 and column(one, 'image_id') == ['1000094796'] * 5


def test_flickr30k_cna_tab_layout(tmp_path):
    kw = mini.write_flickr30k_cna(tmp_path, corrupt=True)
    ds = build('Flickr30kCNDataset', kw['train'])
    check_contract(ds)
    assert (len(ds), ds.num_images, ds.num_missing_images, ds.num_empty_captions) == (16, 4, 1, 1)
    assert column(ds, 'text')[:2] == [mini.caption(0, 0), mini.caption(0, 1)]
    assert column(ds, 'caption_id')[:2] == ['1000092795#0', '1000092795#1']
    test = build('Flickr30kCNDataset', kw['test'], test_mode=True)
    assert (test.num_images, test.num_texts) == (3, 15)
    assert chw(test[5]).shape == (32, 32, 3)
    assert np.array_equal(chw(test[5]), decoded(mini.jpeg_bytes(21)))  # image 1 of split 2


# ----------------------------------------------------------------- COCO-CN
def test_coco_cn_release_layout(tmp_path, logs):
    kw = mini.write_coco_cn(tmp_path, corrupt=True)
    ds = build('COCOCNDataset', kw['train'])
    check_contract(ds)
    assert column(ds, 'image_id') == ['COCO_train2014_000000100000'] * 2 + [
        'COCO_val2014_000000100001', 'COCO_train2014_000000100002', 'COCO_train2014_000000000001']
    assert column(ds, 'image_idx') == [0, 0, 1, 2, 3] and column(ds, 'text_idx') == [0, 1, 2, 3, 4]
    assert column(ds, 'text')[:3] == [mini.caption(0, 0), mini.caption(0, 1), mini.caption(1, 0)]
    assert ds.get_data_info(2)['img_path'] == osp.join(str(tmp_path), 'val2014',
                                                        'COCO_val2014_000000100001.jpg')
    assert (ds.num_missing_images, ds.num_empty_captions) == (1, 1)
    assert osp.join(str(tmp_path), 'val2014', 'COCO_val2014_000000000002.jpg') in '\n'.join(logs)
    val = build('COCOCNDataset', kw['val'], test_mode=True)
    assert (val.num_images, val.num_texts) == (3, 4)
    translated = build('COCOCNDataset', {**kw['test'], 'ann_file': kw['test']['ann_file'].replace(
        'human-written', 'manually-translated')}, test_mode=True)
    assert column(translated, 'text') == [mini.caption(40 + i, 2) for i in range(3)]


def test_coco_cn_bad_split_id(tmp_path):
    kw = mini.write_coco_cn(tmp_path)
    split = tmp_path / kw['val']['split_file']
    split.write_text(split.read_text('utf-8') + '391895\n', 'utf-8')
    with pytest.raises(ValueError, match=rf'{split}, line 4: expected an id like COCO_val2014'):
        build('COCOCNDataset', kw['val'])


# ----------------------------------------------------------------- AIC-ICC
def test_aic_icc_release_layout(tmp_path):
    kw = mini.write_aic_icc(tmp_path, corrupt=True)
    ds = build('AICICCDataset', kw['train'])
    check_contract(ds)
    assert (len(ds), ds.num_images, ds.num_missing_images, ds.num_empty_captions) == (16, 4, 1, 1)
    assert column(ds, 'text')[:2] == [mini.caption(0, 0), mini.caption(0, 1)]  # leading '\n' stripped
    val = build('AICICCDataset', kw['val'], max_images=2, test_mode=True)
    assert (len(val), val.num_images, val.num_texts) == (10, 2, 10)
    assert column(val, 'image_idx') == [0] * 5 + [1] * 5
    # The first 4 entries of train: the missing image is entry 5, so nothing is missing.
    assert build('AICICCDataset', kw['train'], max_images=4).num_missing_images == 0
    with pytest.raises(ValueError, match='max_images'):
        build('AICICCDataset', kw['train'], max_images=0)


def test_aic_icc_errors_name_line_and_element(tmp_path):
    ann = tmp_path / 'ann.json'
    ann.write_text('[\n {"image_id": "a.jpg", "caption": ["x"]},\n {"image_id": 3, "caption": ["y"]}\n]',
                   'utf-8')
    with pytest.raises(ValueError, match=rf'{ann}, line 3: element 1: "image_id" must be'):
        build('AICICCDataset', dict(ann_file=str(ann)))
    ann.write_text('[\n {"image_id": "a.jpg", "caption": ["x"]},\n {"image_id": "b.jpg"\n]', 'utf-8')
    with pytest.raises(ValueError, match=rf'{ann}, line 4: element 1: invalid JSON'):
        build('AICICCDataset', dict(ann_file=str(ann)))


# ----------------------------------------------------------------- MUGE
@pytest.mark.parametrize('original_names', [False, True])
def test_muge_training_pairs(tmp_path, original_names, logs):
    kw = mini.write_muge(tmp_path, corrupt=True, original_names=original_names)
    ds = build('MUGEDataset', kw['train'])
    check_contract(ds)
    tsv = osp.join(str(tmp_path), 'MUGE', kw['train']['img_file'])
    assert column(ds, 'image_id') == ['1000000', '1000001', '1000002', '1000003', '1999999']
    assert column(ds, 'text_idx') == [0, 0, 1, 2, 3] and column(ds, 'image_idx') == [0, 1, 2, 3, 4]
    assert column(ds, 'query_id') == [8000, 8000, 8001, 8002, 9001]
    assert column(ds, 'img_path')[0] == f'{tsv}#1000000'
    assert (ds.num_images, ds.num_texts, ds.num_missing_images, ds.num_empty_captions) == (5, 4, 1, 1)
    assert f'{tsv}#1999998' in '\n'.join(logs)
    # Images decode lazily from the TSV, bit-exact.
    for i in range(4):
        assert np.array_equal(chw(ds[i]), decoded(mini.jpeg_bytes(i)))
    # The truncated base64 image: skipped in training, an error in test mode.
    assert ds[4]['data_samples'].image_idx != 4 and ds.num_unreadable_images == 1
    with pytest.raises(UnreadableImageError, match='1999999'):
        build('MUGEDataset', kw['train'], test_mode=True)[4]


def test_muge_test_mode_gallery_is_whole_tsv(tmp_path):
    kw = mini.write_muge(tmp_path)
    ds = build('MUGEDataset', kw['valid'], test_mode=True)
    check_contract(ds)
    assert column(ds, 'image_id') == [str(1001000 + i) for i in range(5)]
    assert column(ds, 'text_idx') == [0, 0, 1, 2, -1] and column(ds, 'image_idx') == [0, 1, 2, 3, 4]
    assert ds.get_data_info(4)['text'] is None
    assert (ds.num_images, ds.num_texts) == (5, 3)
    assert np.array_equal(chw(ds[4]), decoded(mini.jpeg_bytes(44)))
    assert len(build('MUGEDataset', kw['valid'])) == 4  # no gallery-only records in training


def test_load_image_sources(tmp_path):
    kw = mini.write_muge(tmp_path)
    info = build('MUGEDataset', kw['valid']).get_data_info(1)
    assert np.array_equal(LoadImage()(dict(info))['img'], decoded(mini.jpeg_bytes(41)))
    with pytest.raises(UnreadableImageError, match='not .1001002'):
        LoadImage()({**info, 'image_id': '1001002'})  # stale offset caught
    out = LoadImage()({'img_path': 'shard.tar:k', 'img_bytes': mini.jpeg_bytes(7)})
    assert np.array_equal(out['img'], decoded(mini.jpeg_bytes(7))) and 'img_bytes' not in out
    with pytest.raises(UnreadableImageError, match='shard.tar:k'):
        LoadImage()({'img_path': 'shard.tar:k', 'img_bytes': mini.truncated_jpeg_bytes()})


def test_muge_query_without_images_and_repeated_ids(tmp_path, logs):
    kw = mini.write_muge(tmp_path)
    ann = tmp_path / 'MUGE' / kw['train']['ann_file']
    mini.write_jsonl(ann, [{'text_id': 1, 'text': '无答案', 'image_ids': []},
                           {'text_id': 2, 'text': '两次', 'image_ids': [1000001, '1000001', 1000002]}])
    ds = build('MUGEDataset', kw['train'])
    assert column(ds, 'image_id') == ['1000001', '1000002'] and column(ds, 'text_idx') == [0, 0]
    assert ds.num_queries_without_images == 1 and any('list no image' in m for m in logs)


def test_muge_tsv_errors(tmp_path):
    kw = mini.write_muge(tmp_path)
    tsv = tmp_path / 'MUGE' / kw['train']['img_file']
    lines = tsv.read_text('utf-8').splitlines()
    tsv.write_text('\n'.join(lines + [lines[1]]) + '\n', 'utf-8')
    with pytest.raises(ValueError, match=rf'{tsv}, line 6: image id .1000001. already on line 2'):
        build('MUGEDataset', kw['train'])
    tsv.write_text('\n'.join(lines + ['1000009']) + '\n', 'utf-8')
    with pytest.raises(ValueError, match=rf'{tsv}, line 6: expected'):
        build('MUGEDataset', kw['train'])


# ----------------------------------------------------------------- malformed lines, every loader
MALFORMED = [
    ('RetrievalDataset', lambda r: mini.write_zero_downstream(r, 'icr', malformed=True), 'invalid JSON'),
    ('MatchingDataset', lambda r: mini.write_zero_downstream(r, 'iqm', malformed=True), '"label" must be'),
    ('Flickr30kCNDataset', lambda r: mini.write_flickr30k_cn(r, malformed=True), 'expected'),
    ('Flickr30kCNDataset', lambda r: mini.write_flickr30k_cna(r, malformed=True), 'expected'),
    ('COCOCNDataset', lambda r: mini.write_coco_cn(r, malformed=True), 'expected'),
    ('MUGEDataset', lambda r: mini.write_muge(r, malformed=True), '"image_ids" must be a list'),
    ('MUGEDataset', lambda r: mini.write_muge(r, malformed=True, original_names=True),
     '"item_ids" must be a list'),
]


@pytest.mark.parametrize('type_,write,why', MALFORMED)
def test_malformed_line_names_file_and_line(tmp_path, type_, write, why):
    kw = write(tmp_path)['train']
    ann = osp.join(kw['data_root'], kw['ann_file'])
    lineno = mini.find_line(ann)
    assert lineno > 3
    with pytest.raises(ValueError) as info:
        build(type_, kw)
    assert f'{ann}, line {lineno}: ' in str(info.value) and why in str(info.value)


def test_aic_icc_malformed_entry(tmp_path):
    kw = mini.write_aic_icc(tmp_path, corrupt=True, malformed=True)['train']
    with pytest.raises(ValueError, match=r'line 1: element 5 \(MALFORMED.jpg\): "caption" must be a list'):
        build('AICICCDataset', kw)
