"""tools/test.py end to end on a tiny R2D2 checkpoint and the toy test set: the metrics equal the dense
reference, the results JSON and the Markdown table (paper layout) are written and printed."""
import importlib.util
import json
import pprint
from pathlib import Path

import pytest
import torch

from r2d2lib.datasets import RetrievalDataset
from r2d2lib.evaluation.report import results_markdown
from tests.engine.test_retrieval_loop import build_tiny_r2d2, dense_reference
from tests.evaluation.loop_helpers import one_thread

SCRIPT = Path(__file__).parents[2] / 'tools' / 'test.py'
single_thread = pytest.fixture(autouse=True)(one_thread)


def write_config(path: Path, model_cfg: dict, toy_data: Path, pipeline: list) -> None:
    dataset = dict(type='RetrievalDataset', data_root=str(toy_data), ann_file='test.jsonl',
                   pipeline=pipeline, test_mode=True)
    cfg = dict(default_scope='r2d2lib', model=model_cfg,
               test_dataloader=dict(batch_size=4, num_workers=0, dataset=dataset,
                                    sampler=dict(type='DefaultSampler', shuffle=False),
                                    collate_fn=dict(type='pseudo_collate')),
               test_cfg=dict(type='RetrievalTestLoop', top_k=4),
               test_evaluator=dict(type='RetrievalMetric'),
               log_level='WARNING')
    path.write_text(''.join(f'{key} = {pprint.pformat(value)}\n' for key, value in cfg.items()))


def test_test_script_writes_json_and_table(tmp_path, toy_data, tiny_model_cfg, pipeline32, capsys):
    model = build_tiny_r2d2(tiny_model_cfg)
    checkpoint = tmp_path / 'tiny.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), checkpoint)
    config = tmp_path / 'tiny_retrieval.py'
    write_config(config, tiny_model_cfg, toy_data, pipeline32)
    spec = importlib.util.spec_from_file_location('test_script', SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    metrics = script.main([str(config), str(checkpoint), '--work-dir', str(tmp_path / 'work'),
                           '--dataset-name', 'Toy-CN'])
    dataset = RetrievalDataset(ann_file='test.jsonl', data_root=str(toy_data), pipeline=pipeline32,
                               test_mode=True)
    expected = dense_reference(model, dataset, ks=(1, 5, 10), top_k=4)
    assert metrics == pytest.approx({f'retrieval/{k}': v for k, v in expected.items()})
    record = json.loads((tmp_path / 'work' / 'Toy-CN_results.json').read_text())
    assert record['dataset'] == 'Toy-CN' and record['checkpoint'] == str(checkpoint)
    assert record['metrics'] == pytest.approx(metrics)
    table = (tmp_path / 'work' / 'Toy-CN_results.md').read_text()
    assert table == results_markdown(metrics, 'Toy-CN', top_k=4)
    assert '| Toy-CN | re-ranked (top 4) | ' in table
    row = next(line for line in table.splitlines() if 'embedding similarity' in line)
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert cells[2:] == [f'{expected[k]:.2f}' for k in ('i2t_R@1', 'i2t_R@5', 'i2t_R@10', 't2i_R@1',
                                                          't2i_R@5', 't2i_R@10', 'R@M')]
    assert table in capsys.readouterr().out
