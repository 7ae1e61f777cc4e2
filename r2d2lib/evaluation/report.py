"""Results of a test run as the paper lays them out: a JSON record and Markdown tables.

Retrieval (Table 1): TR (image-to-text) R@1/5/10, IR (text-to-image) R@1/5/10 and R@M,
one row per ranking (embedding similarity; re-ranked by the cross encoders); a
direction that was not evaluated (MUGE has IR only) shows ``-``. Matching
(Table 2): AUC (and accuracy). Zero-shot classification: top-1 / top-5 accuracy.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional

RETRIEVAL_COLUMNS = [('TR R@1', 'i2t_R@1'), ('TR R@5', 'i2t_R@5'), ('TR R@10', 'i2t_R@10'),
                     ('IR R@1', 't2i_R@1'), ('IR R@5', 't2i_R@5'), ('IR R@10', 't2i_R@10'),
                     ('R@M', 'R@M')]
RANKING_NAMES = {'': 'embedding similarity', 'rerank_': 're-ranked'}


def _by_prefix(metrics: Dict[str, float]) -> Dict[str, Dict[str, float]]:
    """``{'retrieval/R@M': v}`` -> ``{'retrieval': {'R@M': v}}`` (no prefix: ``''``)."""
    groups: Dict[str, Dict[str, float]] = {}
    for key, value in metrics.items():
        prefix, _, name = key.rpartition('/')
        groups.setdefault(prefix, {})[name] = value
    return groups


def _table(header: List[str], rows: List[List[str]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join(['---'] * len(header)) + '|']
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return '\n'.join(lines)


def _fmt(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.2f}'


def retrieval_rows(values: Dict[str, float], dataset: str, top_k: Optional[int] = None) -> List[List[str]]:
    """One row per ranking present (``rerank_`` keys: re-ranked)."""
    rows = []
    for prefix, name in RANKING_NAMES.items():
        if f'{prefix}R@M' not in values:
            continue
        if prefix and top_k:
            name = f'{name} (top {top_k})'
        rows.append([dataset, name] + [_fmt(values.get(prefix + key)) for _, key in RETRIEVAL_COLUMNS])
    return rows


def results_markdown(metrics: Dict[str, float], dataset: str, top_k: Optional[int] = None) -> str:
    """Markdown tables of a test run's metrics in the paper's layout (one per task present)."""
    tables = []
    for prefix, values in _by_prefix(metrics).items():
        if any(key.endswith('R@M') for key in values):
            tables.append(_table(['Dataset', 'Ranking'] + [c for c, _ in RETRIEVAL_COLUMNS],
                                 retrieval_rows(values, dataset, top_k)))
        elif 'AUC' in values:
            tables.append(_table(['Dataset', 'AUC', 'Accuracy'],
                                 [[dataset, _fmt(values['AUC']), _fmt(values.get('accuracy'))]]))
        elif any(key.startswith('top') for key in values):
            keys = sorted((k for k in values if k.startswith('top')), key=lambda k: int(k[3:]))
            tables.append(_table(['Dataset'] + [f'Top-{k[3:]}' for k in keys],
                                 [[dataset] + [_fmt(values[k]) for k in keys]]))
        else:
            tables.append(_table(['Dataset'] + [f'{prefix}/{k}' if prefix else k for k in values],
                                 [[dataset] + [_fmt(v) for v in values.values()]]))
    return '\n\n'.join(tables) + '\n'


def write_results(out_dir: str, metrics: Dict[str, float], dataset: str, top_k: Optional[int] = None,
                  **record) -> Dict[str, str]:
    """Write ``<dataset>_results.json`` and ``<dataset>_results.md`` into ``out_dir``; their paths."""
    os.makedirs(out_dir, exist_ok=True)
    stem = osp.join(out_dir, ''.join(c if c.isalnum() or c in '-_.' else '_' for c in dataset) + '_results')
    with open(stem + '.json', 'w', encoding='utf-8') as f:
        json.dump(dict(record, dataset=dataset, metrics=metrics), f, indent=2, ensure_ascii=False)
    with open(stem + '.md', 'w', encoding='utf-8') as f:
        f.write(results_markdown(metrics, dataset, top_k))
    return dict(json=stem + '.json', markdown=stem + '.md')
