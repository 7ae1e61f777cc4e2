"""PositivePairs membership and RetrievalGallery built from pair records (MUGE-style records)."""
import pytest
import torch

from r2d2lib.evaluation import PositivePairs, hit_matrix
from r2d2lib.evaluation.gallery import RetrievalGallery


def test_positive_pairs_membership_and_counts():
    pairs = PositivePairs(torch.tensor([0, 1, 1, 2, 1]), torch.tensor([0, 1, 2, 2, 1]), 3, 4)
    assert len(pairs) == 4  # the duplicate (1, 1) counts once
    got = pairs.contains(torch.tensor([[0], [1], [2]]), torch.arange(4)[None])
    assert got.tolist() == [[True, False, False, False], [False, True, True, False],
                            [False, False, True, False]]
    # out of range never matches (no key collision with a neighbouring text)
    assert not pairs.contains(torch.tensor([0]), torch.tensor([5])).any()
    assert not pairs.contains(torch.tensor([-1, 3]), torch.tensor([0, 0])).any()
    assert pairs.texts_per_image().tolist() == [1, 1, 2, 0]
    assert pairs.images_per_text().tolist() == [1, 2, 1]
    with pytest.raises(ValueError, match='image ids'):
        PositivePairs(torch.tensor([0]), torch.tensor([4]), 1, 4)


def test_hit_matrix_with_several_positives():
    pairs = PositivePairs(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 2]), 2, 3)
    # t2i: text 1 retrieves [2, 0]: image 2 is one of its positives
    assert hit_matrix(torch.tensor([[2, 0]]), torch.tensor([1]), pairs, 't2i').tolist() == [[True, False]]
    # i2t: image 2 retrieves [0, 1]: text 1 has image 2 among its positives
    assert hit_matrix(torch.tensor([[0, 1]]), torch.tensor([2]), pairs, 'i2t').tolist() == [[False, True]]


def test_gallery_from_muge_like_records():
    records = [
        dict(img_path='a', text='q0', image_idx=0, text_idx=0),
        dict(img_path='b', text='q0', image_idx=1, text_idx=0),   # a second positive of q0
        dict(img_path='b', text='q1', image_idx=1, text_idx=1),
        dict(img_path='z', text=None, image_idx=3, text_idx=-1),  # gallery-only
        dict(img_path='c', text='q2', image_idx=2, text_idx=2),
    ]
    gallery = RetrievalGallery.from_records(records)
    assert gallery.image_records.tolist() == [0, 1, 4, 3]  # one record per image, by image_idx
    assert gallery.texts == ['q0', 'q1', 'q2']
    assert gallery.positives.texts_per_image().tolist() == [1, 2, 1, 0]
    assert gallery.positives.contains(torch.tensor(0), torch.tensor(1))


@pytest.mark.parametrize('bad,message', [
    (dict(img_path='a', text='x', image_idx=0), "missing key 'text_idx'"),
    (dict(img_path='a', text=None, image_idx=0, text_idx=3), 'gallery-only'),
    (dict(img_path='a', text='other', image_idx=0, text_idx=0), 'earlier record'),
])
def test_gallery_errors_name_the_record(bad, message):
    records = [dict(img_path='a', text='q0', image_idx=0, text_idx=0), bad]
    with pytest.raises((KeyError, ValueError), match=message) as info:
        RetrievalGallery.from_records(records, source='val.jsonl')
    assert 'val.jsonl, record 1' in str(info.value)
