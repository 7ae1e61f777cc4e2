"""Tests for the embedded toy shapes corpus: determinism, captions, pixels, vocab."""
import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from r2d2lib.datasets import toy_shapes as ts

SMALL = dict(num_train=12, num_test=6, image_size=64, seed=0)
CAPTION_RE = re.compile('(左上角|右上角|左下角|右下角)'
                        '|(红色|绿色|蓝色|黄色)的(大|小)(圆形|正方形|三角形)')


@pytest.fixture(scope='module')
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('toy')
    ts.generate_toy_shapes(out, **SMALL)
    return out


def read_jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text('utf-8').splitlines()]


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert('RGB'))


def parse_caption(caption: str) -> set:
    """(quadrant, colour, size, shape) tuples a caption names."""
    objs, quadrant, pending = set(), None, None
    for m in CAPTION_RE.finditer(caption):
        if m.group(1):
            quadrant = m.group(1)
            if pending:  # template 3: the phrase precedes its quadrant
                objs.add((quadrant, *pending))
                pending, quadrant = None, None
        elif quadrant:
            objs.add((quadrant, m.group(2), m.group(3), m.group(4)))
            quadrant = None
        else:
            pending = (m.group(2), m.group(3), m.group(4))
    return objs


def test_counts_and_layout(corpus):
    meta = json.loads((corpus / 'meta.json').read_text('utf-8'))
    assert meta['counts']['num_train_texts'] == 24
    for split, n in (('train', 12), ('test', 6)):
        anns = read_jsonl(corpus / f'{split}.jsonl')
        objs = read_jsonl(corpus / f'{split}_objects.jsonl')
        assert len(anns) == 2 * n and len(objs) == n
        assert [a['image_path'] for a in anns] == [
            f'images/{split}_{i:06d}.png' for i in range(n) for _ in range(2)]
        for rec in objs:
            assert pixels(corpus / rec['image_path']).shape == (64, 64, 3)
    vocab = (corpus / 'vocab.txt').read_text('utf-8').splitlines()
    assert vocab[:5] == ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']


def test_same_seed_identical_other_seed_differs(tmp_path, corpus):
    again = tmp_path / 'again'
    other = tmp_path / 'other'
    ts.generate_toy_shapes(again, **SMALL)
    ts.generate_toy_shapes(other, **{**SMALL, 'seed': 1})
    for name in ('train.jsonl', 'test.jsonl', 'train_objects.jsonl',
                 'test_objects.jsonl', 'vocab.txt'):
        assert (again / name).read_bytes() == (corpus / name).read_bytes()
    for name in sorted(os.listdir(corpus / 'images')):
        assert np.array_equal(pixels(again / 'images' / name),
                              pixels(corpus / 'images' / name))
    assert (other / 'train.jsonl').read_bytes() != (corpus / 'train.jsonl').read_bytes()
    assert not np.array_equal(pixels(other / 'images/train_000000.png'),
                              pixels(corpus / 'images/train_000000.png'))


def test_test_split_independent_of_num_train(tmp_path, corpus):
    ts.generate_toy_shapes(tmp_path, **{**SMALL, 'num_train': 3})
    assert (tmp_path / 'test.jsonl').read_bytes() == (corpus / 'test.jsonl').read_bytes()


def test_captions_name_both_objects(corpus):
    for split in ('train', 'test'):
        anns = read_jsonl(corpus / f'{split}.jsonl')
        by_image = {}
        for a in anns:
            by_image.setdefault(a['image_path'], []).append(a['text'])
        for rec in read_jsonl(corpus / f'{split}_objects.jsonl'):
            a, b = rec['objects']
            assert a['quadrant'] != b['quadrant']
            assert any(a[k] != b[k] for k in ('color', 'shape', 'size'))
            expected = {(o['quadrant'], o['color'], o['size'], o['shape'])
                        for o in rec['objects']}
            captions = by_image[rec['image_path']]
            assert captions == rec['captions'] and len(set(captions)) == 2
            for caption in captions:
                assert parse_caption(caption) == expected, caption


def test_swap_pairs_share_bag_of_characters(corpus):
    recs = read_jsonl(corpus / 'train_objects.jsonl')
    for base, swapped in zip(recs[0::2], recs[1::2]):
        assert base['group'] == swapped['group'] and base['swap'] is None
        assert swapped['swap'] in ('color', 'shape', 'size', 'position')
        key = lambda r: {(o['quadrant'], o['color'], o['size'], o['shape'])
                         for o in r['objects']}
        assert key(base) != key(swapped)
        for c0, c1 in zip(base['captions'], swapped['captions']):
            assert Counter(c0) == Counter(c1)


def test_shapes_drawn_inside_boxes(corpus):
    for rec in read_jsonl(corpus / 'train_objects.jsonl'):
        img = pixels(corpus / rec['image_path']).astype(int)
        mask = np.zeros(img.shape[:2], dtype=bool)
        for obj in rec['objects']:
            x0, y0, x1, y1 = obj['bbox']
            half = 32
            row, col = y0 // half, x0 // half
            assert (y1 - 1) // half == row and (x1 - 1) // half == col
            quadrant = ['左上角', '右上角', '左下角', '右下角'][2 * row + col]
            assert obj['quadrant'] == quadrant
            colour = np.array(ts.COLORS[obj['color']])
            centre = img[(y0 + y1) // 2, (x0 + x1) // 2]
            assert np.abs(centre - colour).max() <= ts.NOISE
            sub = ts.shape_mask(obj['shape'], obj['bbox'])
            inside = img[y0:y1, x0:x1][sub]
            assert np.abs(inside - colour).max() <= ts.NOISE
            mask[y0:y1, x0:x1] |= sub
        assert np.abs(img[~mask] - ts.BACKGROUND).max() <= ts.NOISE


def test_sizes_clearly_different(corpus):
    sides = {'大': [], '小': []}
    for split in ('train', 'test'):
        for rec in read_jsonl(corpus / f'{split}_objects.jsonl'):
            for o in rec['objects']:
                sides[o['size']].append(o['bbox'][2] - o['bbox'][0])
    assert min(sides['大']) >= 1.4 * max(sides['小'])


def test_tokenizer_one_token_per_character_no_unk(corpus):
    tok = ts.build_toy_tokenizer(corpus / 'vocab.txt')
    assert tok.pad_token_id == 0
    captions = [a['text'] for s in ('train', 'test')
                for a in read_jsonl(corpus / f'{s}.jsonl')]
    # Also every template, not only those drawn.
    objs = [dict(quadrant='左上角', color='黄色', size='大', shape='正方形'),
            dict(quadrant='右下角', color='绿色', size='小', shape='三角形')]
    captions += [t.format(**ts._phrase_fields(objs)) for t in ts.TEMPLATES]
    for caption in captions:
        tokens = tok.tokenize(caption)
        assert tokens == list(caption)
        ids = tok(caption)['input_ids']
        assert tok.unk_token_id not in ids
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id


def test_ensure_skips_when_up_to_date(tmp_path, monkeypatch):
    first = ts.ensure_toy_shapes(tmp_path, num_train=4, num_test=2)
    assert first['num_train_images'] == 4
    real = ts.generate_toy_shapes

    def fail(*args, **kwargs):
        raise AssertionError('regenerated although up to date')

    monkeypatch.setattr(ts, 'generate_toy_shapes', fail)
    assert ts.ensure_toy_shapes(tmp_path, num_train=4, num_test=2) == first
    calls = []

    def record(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(ts, 'generate_toy_shapes', record)
    ts.ensure_toy_shapes(tmp_path, num_train=2, num_test=2)  # params differ
    assert len(calls) == 1
    assert not (tmp_path / 'images/train_000003.png').exists()  # stale removed
    (tmp_path / 'meta.json').unlink()  # interrupted run: no marker
    ts.ensure_toy_shapes(tmp_path, num_train=2, num_test=2)
    assert len(calls) == 2


def test_cli_prints_summary(tmp_path, capsys):
    ts.main(['--out', str(tmp_path), '--num-train', '2', '--num-test', '2',
             '--image-size', '32', '--seed', '3'])
    summary = json.loads(capsys.readouterr().out)
    assert summary['num_train_texts'] == 4 and summary['image_size'] == 32
    assert pixels(tmp_path / 'images/test_000001.png').shape == (32, 32, 3)


def test_invalid_parameters(tmp_path):
    with pytest.raises(ValueError):
        ts.generate_toy_shapes(tmp_path, image_size=15)
    with pytest.raises(ValueError):
        ts.generate_toy_shapes(tmp_path, captions_per_image=4)


def test_object_captions_same_images_one_caption_per_object(tmp_path, corpus):
    ts.generate_toy_shapes(tmp_path, **SMALL, caption_style='objects')
    scene = read_jsonl(corpus / 'test_objects.jsonl')
    objects = read_jsonl(tmp_path / 'test_objects.jsonl')
    for a, b in zip(scene, objects):
        assert a['objects'] == b['objects']  # the same scenes and boxes
        assert np.array_equal(pixels(corpus / a['image_path']), pixels(tmp_path / b['image_path']))
        assert b['captions'] == [f"有一个{o['color']}的{o['size']}{o['shape']}" for o in b['objects']]
    anns = read_jsonl(tmp_path / 'test.jsonl')
    assert [a['text'] for a in anns] == [c for r in objects for c in r['captions']]
    meta = json.loads((tmp_path / 'meta.json').read_text())
    assert meta['params']['caption_style'] == 'objects'
    assert 'caption_style' not in json.loads((corpus / 'meta.json').read_text())['params']
    with pytest.raises(ValueError, match="caption_style must be one of"):
        ts.generate_toy_shapes(tmp_path / 'x', caption_style='words')
    with pytest.raises(ValueError, match="captions_per_image=3 does not apply"):
        ts.generate_toy_shapes(tmp_path / 'x', caption_style='objects', captions_per_image=3)
