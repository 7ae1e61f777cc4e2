"""Recall@k metric of image-text retrieval from sharded ranked results."""
from collections import defaultdict
from typing import Any, Dict, List, Optional, Sequence

from mmengine.evaluator import BaseMetric

from r2d2lib.evaluation.ranking import DIRECTIONS, recall_at_k
from r2d2lib.registry import METRICS


@METRICS.register_module()
class RetrievalMetric(BaseMetric):
    """R@k (in percent) of image-to-text and text-to-image retrieval, and R@M.

    Each element given to :meth:`process` is one shard of ranked queries::

        dict(ranking='embedding' | 'rerank', direction='i2t' | 't2i',
             topk_indices=LongTensor[Q, K], query_indices=LongTensor[Q],
             positives=PositivePairs)      # or txt2img=LongTensor[Nt]

    ``positives`` is the set of positive (text, image) pairs
    (:class:`~r2d2lib.evaluation.PositivePairs`): a t2i query is a hit at k if
    any of its positive images is among its first k results, an i2t query if
    any of the first k texts has the query image among its positives.
    ``txt2img`` (one image per text) is accepted instead.

    Only hit counts are stored, one record per shard, so the loop must give
    every rank the same number of shards and call ``evaluate`` with
    ``size = shards_per_rank * world_size``.

    The keys are ``i2t_R@1 ... t2i_R@10`` and ``R@M`` (mean of the recalls of
    the evaluated directions) for the ``'embedding'`` ranking, and the same
    prefixed with ``'<ranking>_'`` (``rerank_R@M``) for any other ranking.

    Args:
        ks (Sequence[int]): Cut-offs k of R@k.
        directions (Sequence[str]): Directions evaluated: ``('i2t', 't2i')``,
            or ``('t2i',)`` for MUGE's text-to-image-only protocol (R@M is then
            the mean of the t2i recalls). Shards of other directions are ignored.
        prefix (str): Prefix mmengine puts before every key (``prefix/key``).
        collect_device (str): Device used to collect results across ranks.
    """

    default_prefix: Optional[str] = 'retrieval'

    def __init__(self,
                 ks: Sequence[int] = (1, 5, 10),
                 directions: Sequence[str] = DIRECTIONS,
                 prefix: Optional[str] = 'retrieval',
                 collect_device: str = 'cpu') -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not ks or any(int(k) < 1 for k in ks):
            raise ValueError(f'ks must be positive integers, got {ks}')
        if isinstance(directions, str):
            directions = (directions, )
        unknown = [d for d in directions if d not in DIRECTIONS]
        if not directions or unknown:
            raise ValueError(f'directions must be a non-empty subset of {DIRECTIONS}, got '
                             f'{tuple(directions)}')
        self.ks = tuple(int(k) for k in ks)
        self.directions = tuple(d for d in DIRECTIONS if d in directions)

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Store the query count and R@k hit counts of every shard."""
        for shard in data_samples:
            direction = shard['direction']
            if direction not in DIRECTIONS:
                raise ValueError(f'Unknown direction {direction!r}')
            if direction not in self.directions:
                continue
            positives = shard['positives'] if 'positives' in shard else shard['txt2img']
            hits = recall_at_k(shard['topk_indices'], shard['query_indices'], positives,
                               direction, self.ks)
            self.results.append(
                dict(ranking=str(shard['ranking']), direction=direction,
                     num_queries=int(shard['query_indices'].numel()),
                     hits=hits))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Sum the shards' counts and return recalls in percent."""
        queries: Dict[tuple, int] = defaultdict(int)
        hits: Dict[tuple, int] = defaultdict(int)
        rankings: List[str] = []
        for record in results:
            key = (record['ranking'], record['direction'])
            if record['ranking'] not in rankings:
                rankings.append(record['ranking'])
            queries[key] += record['num_queries']
            for k, count in record['hits'].items():
                hits[key + (int(k), )] += count
        # embedding first, then the others in order of appearance
        rankings.sort(key=lambda name: name != 'embedding')
        metrics: Dict[str, float] = {}
        for ranking in rankings:
            prefix = '' if ranking == 'embedding' else f'{ranking}_'
            recalls = []
            for direction in self.directions:
                total = queries.get((ranking, direction))
                if total is None:
                    raise ValueError(f'RetrievalMetric(directions={self.directions}) got no '
                                     f'{direction} results for the {ranking!r} ranking')
                for k in self.ks:
                    hit = hits[(ranking, direction, k)]
                    value = 100.0 * hit / max(total, 1)
                    metrics[f'{prefix}{direction}_R@{k}'] = value
                    recalls.append(value)
            metrics[f'{prefix}R@M'] = sum(recalls) / len(recalls)
        return metrics
