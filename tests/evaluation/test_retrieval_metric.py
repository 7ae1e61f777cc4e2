"""Tests of RetrievalMetric on hand-built rankings (4 images, 8 texts)."""
import pytest
import torch
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import DefaultScope

from r2d2lib.evaluation import RetrievalMetric

TXT2IMG = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
# i2t: image 0 -> own text at rank 2, image 1 -> rank 1,
#      image 2 -> rank 7, image 3 -> rank 1
I2T = torch.tensor([[2, 0, 3, 4, 5, 6, 7, 1],
                    [2, 0, 1, 3, 4, 5, 6, 7],
                    [0, 1, 2, 3, 6, 7, 4, 5],
                    [6, 7, 0, 1, 2, 3, 4, 5]])
# t2i: ranks of the correct image 1, 2, 1, 4, 1, 2, 1, 4
T2I = torch.tensor([[0, 1, 2, 3], [1, 0, 2, 3], [1, 0, 2, 3], [0, 2, 3, 1],
                    [2, 0, 1, 3], [3, 2, 0, 1], [3, 0, 1, 2], [0, 1, 2, 3]])
EXPECTED = {'i2t_R@1': 50.0, 'i2t_R@5': 75.0, 'i2t_R@10': 100.0,
            't2i_R@1': 50.0, 't2i_R@5': 100.0, 't2i_R@10': 100.0,
            'R@M': 475.0 / 6}


def _shards(ranking, direction, topk, parts):
    return [dict(ranking=ranking, direction=direction,
                 topk_indices=topk[rows], query_indices=rows,
                 txt2img=TXT2IMG) for rows in parts]


def _perfect_records():
    i2t = torch.stack([torch.cat([torch.tensor([2 * i, 2 * i + 1]),
                                  torch.tensor([t for t in range(8)
                                                if t // 2 != i])])
                       for i in range(4)])
    t2i = torch.stack([torch.tensor([i] + [j for j in range(4) if j != i])
                       for i in TXT2IMG.tolist()])
    rows = [torch.arange(4)]
    return (_shards('rerank', 'i2t', i2t, rows) +
            _shards('rerank', 't2i', t2i, [torch.arange(8)]))


def test_hand_computed_recalls_from_shards():
    metric = RetrievalMetric()
    records = (
        _shards('embedding', 'i2t', I2T, [torch.tensor([0, 2]),
                                          torch.tensor([1, 3])]) +
        _shards('embedding', 't2i', T2I, [torch.arange(0, 8, 2),
                                          torch.arange(1, 8, 2)]) +
        _perfect_records())
    metric.process(None, records[:3])
    metric.process(None, records[3:])
    assert len(metric.results) == len(records)
    assert all('topk_indices' not in r for r in metric.results)
    metrics = metric.evaluate(len(records))
    expected = {f'retrieval/{k}': v for k, v in EXPECTED.items()}
    expected.update({f'retrieval/rerank_{k}': 100.0 for k in EXPECTED})
    assert metrics.keys() == expected.keys()
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value), key
    assert metric.results == []


def test_only_present_rankings_and_custom_ks():
    metric = RetrievalMetric(ks=(1, 2), prefix='val')
    metric.process(None, _shards('embedding', 'i2t', I2T,
                                 [torch.arange(4)]))
    metric.process(None, _shards('embedding', 't2i', T2I,
                                 [torch.arange(8)]))
    metrics = metric.evaluate(2)
    assert metrics == pytest.approx({
        'val/i2t_R@1': 50.0, 'val/i2t_R@2': 75.0, 'val/t2i_R@1': 50.0,
        'val/t2i_R@2': 75.0, 'val/R@M': 62.5})


def test_empty_shard_counts_nothing():
    metric = RetrievalMetric(directions=('t2i', ))
    empty = dict(ranking='embedding', direction='t2i',
                 topk_indices=torch.zeros(0, 4, dtype=torch.long),
                 query_indices=torch.zeros(0, dtype=torch.long),
                 txt2img=TXT2IMG)
    metric.process(None, [empty] + _shards('embedding', 't2i', T2I,
                                           [torch.arange(8)]))
    metrics = metric.compute_metrics(metric.results)
    assert metrics['t2i_R@1'] == pytest.approx(50.0)


def test_built_from_registry_with_default_scope():
    with DefaultScope.overwrite_default_scope('r2d2lib'):
        metric = MMENGINE_METRICS.build(dict(type='RetrievalMetric'))
    assert isinstance(metric, RetrievalMetric)
    assert metric.prefix == 'retrieval'
    with pytest.raises(ValueError):
        metric.process(None, [dict(ranking='embedding', direction='x',
                                   topk_indices=T2I, txt2img=TXT2IMG,
                                   query_indices=torch.arange(8))])


def test_multi_positive_and_t2i_only():
    """MUGE-like: 2 texts, 3 images; text 0 has images 0 and 2; image 1 is text 1's."""
    from r2d2lib.evaluation import PositivePairs
    pairs = PositivePairs(torch.tensor([0, 0, 1]), torch.tensor([0, 2, 1]), 2, 3)
    t2i = torch.tensor([[2, 1, 0], [0, 2, 1]])  # text 0: hit at 1 (image 2); text 1: hit at 3
    i2t = torch.tensor([[1, 0], [0, 1], [0, 1]])  # image 0 -> text 0 at 2; 1 -> at 2; 2 -> at 1
    shard = dict(ranking='embedding', query_indices=torch.arange(2), positives=pairs)
    metric = RetrievalMetric(ks=(1, 2), directions=('t2i', ))
    metric.process(None, [dict(shard, direction='t2i', topk_indices=t2i),
                          dict(shard, direction='i2t', topk_indices=i2t,
                               query_indices=torch.arange(3))])
    assert metric.evaluate(2) == pytest.approx({'retrieval/t2i_R@1': 50.0, 'retrieval/t2i_R@2': 50.0,
                                                'retrieval/R@M': 50.0})
    metric = RetrievalMetric(ks=(1, 2))
    metric.process(None, [dict(shard, direction='t2i', topk_indices=t2i),
                          dict(shard, direction='i2t', topk_indices=i2t,
                               query_indices=torch.arange(3))])
    metrics = metric.evaluate(2)
    assert metrics['retrieval/i2t_R@1'] == pytest.approx(100 / 3)
    assert metrics['retrieval/i2t_R@2'] == pytest.approx(100.0)
    assert metrics['retrieval/R@M'] == pytest.approx((100 / 3 + 100 + 50 + 50) / 4)


def test_missing_direction_and_bad_directions_are_errors():
    metric = RetrievalMetric()
    metric.process(None, _shards('embedding', 't2i', T2I, [torch.arange(8)]))
    with pytest.raises(ValueError, match='no i2t results'):
        metric.evaluate(1)
    with pytest.raises(ValueError, match='directions'):
        RetrievalMetric(directions=('x2y', ))
