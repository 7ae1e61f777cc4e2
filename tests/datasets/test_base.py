"""The shared record contract (PairCollector) and the annotation readers."""
import pytest

from r2d2lib.datasets.annotation_files import iter_json_array, iter_text_lines, require
from r2d2lib.datasets.base import PairCollector
from r2d2lib.datasets.caption_files import parse_caption_line

from . import miniature as mini


def test_pair_collector_indices_and_drops(tmp_path, logs):
    a, b, c = (str(mini.write_image(tmp_path / f'{n}.jpg', i)) for i, n in enumerate('abc'))
    gone = str(tmp_path / 'gone.jpg')
    col = PairCollector('ann')
    col.add_pair(b, ' 查询一 ', text_key='q1')
    col.add_pair(a, '查询一', text_key='q1')     # same text, second positive image
    col.add_pair(gone, '查询二', text_key='q2')  # missing image: dropped
    col.add_pair(b, '   ', text_key='q3')        # empty: dropped
    col.add_pair(gone, '查询四')                 # counted again, logged once
    col.add_pair(a, '描述五')
    col.add_gallery_image(c)
    col.add_gallery_image(a)                     # already a positive: nothing added
    got = [(r['img_path'], r['text'], r['image_idx'], r['text_idx']) for r in col.records]
    assert got == [(b, '查询一', 0, 0), (a, '查询一', 1, 0), (a, '描述五', 1, 1), (c, None, 2, -1)]
    assert (col.num_images, col.num_texts) == (3, 2)
    assert (col.num_missing_images, col.num_empty_captions, col.missing_paths) == (2, 1, [gone])
    col.report()
    text = '\n'.join(logs)
    assert 'ann: dropped 1 record(s) with an empty caption' in text
    assert f'1 listed image(s) do not exist; dropped 2 record(s):\n  {gone}' in text


def test_pair_collector_available_override():
    col = PairCollector('tsv')
    assert col.add_pair('f.tsv#1', 'x', available=True)['image_idx'] == 0
    assert col.add_pair('f.tsv#2', 'y', available=False) is None
    assert col.missing_paths == ['f.tsv#2']


def test_iter_text_lines_bom_blank_and_utf8(tmp_path):
    path = tmp_path / 'a.txt'
    path.write_bytes('\ufeff第一行\r\n\n  \n第四行\n'.encode())
    assert list(iter_text_lines(str(path))) == [(1, '第一行'), (4, '第四行')]
    path.write_bytes('好\n'.encode() + b'\xff\xfe\n')
    with pytest.raises(ValueError, match=rf'{path}, line 2: not valid UTF-8'):
        list(iter_text_lines(str(path)))


def test_iter_json_array_positions(tmp_path):
    path = tmp_path / 'a.json'
    path.write_text('[\n {"a": 1},\n\n {"b": [1,\n 2]}, 3\n]', 'utf-8')
    assert list(iter_json_array(str(path))) == [(0, 2, {'a': 1}), (1, 4, {'b': [1, 2]}), (2, 5, 3)]
    path.write_text('[]', 'utf-8')
    assert list(iter_json_array(str(path))) == []
    path.write_text('{"a": 1}', 'utf-8')
    with pytest.raises(ValueError, match='line 1: expected a JSON array'):
        list(iter_json_array(str(path)))
    path.write_text('[1,\n2\n3]', 'utf-8')
    with pytest.raises(ValueError, match=r"line 3: after element 1: expected ',' or '\]'"):
        list(iter_json_array(str(path)))


def test_require_types():
    assert require({'item_ids': [1]}, 'image_ids', list, 'f', 3, ('item_ids',)) == [1]
    with pytest.raises(ValueError, match='f, line 3: missing key "a" / "b"'):
        require({}, 'a', str, 'f', 3, ('b',))
    with pytest.raises(ValueError, match='"n" must be an integer, got bool'):
        require({'n': True}, 'n', int, 'f', 1)


@pytest.mark.parametrize('line,expected', [
    ('1000092795#zhb#0 一只 狗', ('1000092795', '1000092795#zhb#0', '一只 狗', True)),
    ('1000092795.jpg#3\t一只狗', ('1000092795.jpg', '1000092795.jpg#3', '一只狗', False)),
    ('COCO_val2014_000000391895#0\t 有 空格 ', ('COCO_val2014_000000391895', 'COCO_val2014_000000391895#0',
                                                ' 有 空格 ', False)),
])
def test_parse_caption_line(line, expected):
    assert tuple(parse_caption_line(line, 'f', 1)) == expected


@pytest.mark.parametrize('line', ['1000092795', '1000092795#a\t狗', '#0\t狗', '1#2#3#4 狗', 'x#zhb#0狗'])
def test_parse_caption_line_malformed(line):
    with pytest.raises(ValueError, match='f, line 7: '):
        parse_caption_line(line, 'f', 7)
