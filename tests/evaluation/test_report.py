"""Results tables in the paper's layout: retrieval (TR / IR / R@M, IR only for MUGE), matching, zero-shot."""
import json

from r2d2lib.evaluation import results_markdown, write_results


def test_retrieval_table_both_rankings_and_t2i_only():
    metrics = {'retrieval/i2t_R@1': 50.0, 'retrieval/i2t_R@5': 75.0, 'retrieval/i2t_R@10': 100.0,
               'retrieval/t2i_R@1': 25.0, 'retrieval/t2i_R@5': 62.5, 'retrieval/t2i_R@10': 87.5,
               'retrieval/R@M': 66.6667, 'retrieval/rerank_t2i_R@1': 37.5, 'retrieval/rerank_R@M': 70.0}
    table = results_markdown(metrics, 'COCO-CN', top_k=16)
    assert table.splitlines() == [
        '| Dataset | Ranking | TR R@1 | TR R@5 | TR R@10 | IR R@1 | IR R@5 | IR R@10 | R@M |',
        '|---|---|---|---|---|---|---|---|---|',
        '| COCO-CN | embedding similarity | 50.00 | 75.00 | 100.00 | 25.00 | 62.50 | 87.50 | 66.67 |',
        '| COCO-CN | re-ranked (top 16) | - | - | - | 37.50 | - | - | 70.00 |',
    ]


def test_matching_and_zero_shot_tables(tmp_path):
    table = results_markdown({'matching/AUC': 81.054, 'matching/accuracy': 74.5}, 'ICM')
    assert table.splitlines()[2] == '| ICM | 81.05 | 74.50 |'
    table = results_markdown({'zero_shot/top5': 90.0, 'zero_shot/top1': 61.25}, 'ImageNet-CN')
    assert table.splitlines()[0] == '| Dataset | Top-1 | Top-5 |'
    assert table.splitlines()[2] == '| ImageNet-CN | 61.25 | 90.00 |'
    paths = write_results(str(tmp_path), {'matching/AUC': 80.0}, 'IQM val', checkpoint='x.pth')
    assert paths['json'].endswith('IQM_val_results.json')
    assert json.loads(open(paths['json']).read()) == dict(checkpoint='x.pth', dataset='IQM val',
                                                          metrics={'matching/AUC': 80.0})
