"""tools/benchmarks/evaluation.py at tiny size: both methods run, rank identically, report memory."""
import argparse
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / 'tools' / 'benchmarks' / 'evaluation.py'


@pytest.fixture(scope='module')
def benchmark():
    spec = importlib.util.spec_from_file_location('eval_benchmark', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_prints_one_line_per_method(benchmark, capsys, tmp_path):
    parser = argparse.ArgumentParser()
    benchmark.add_arguments(parser)
    # a budget too small for the dense matrices at 120 x 600: the baseline runs scaled down
    args = parser.parse_args(['--images', '120', '--texts', '600', '--dim', '32', '--topk', '12',
                              '--chunk-size', '50', '--rerank-batch-size', '100', '--threads', '1',
                              '--baseline-max-gib', '0.0002', '--json', str(tmp_path / 'out.json')])
    assert benchmark.run(args) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line['method'] for line in lines] == ['ours', 'ours', 'dense (official)', 'dense (official)',
                                                  'agreement', 'scaling']
    ours, half, dense = lines[0], lines[1], lines[2]
    assert (ours['images'], ours['texts']) == (120, 600) and (half['images'], half['texts']) == (60, 300)
    assert dense['scaled_down'] and dense['images'] < 120
    # 3 float32 matrices of images x texts fit 0.0002 GiB, with the 1:5 ratio kept
    assert 3 * 4 * dense['images'] * dense['texts'] <= 0.0002 * 2 ** 30
    assert dense['texts'] == 5 * dense['images'] or abs(dense['texts'] / dense['images'] - 5) < 0.1
    for line in lines[:4]:
        assert line['seconds'] > 0 and line['peak_rss_mb'] >= line['base_rss_mb'] > 0
        assert line['queries_x_k'] == (line['images'] + line['texts']) * 12
        assert 'error' not in line
        assert line['t2i_R@1'] > 50  # the synthetic texts lie near their image
    assert lines[4]['identical_top10_share'] == 1.0 and lines[4]['identical_top1_share'] == 1.0
    assert lines[5]['ours_queries_x_k_ratio'] == 2.0
    assert json.loads((tmp_path / 'out.json').read_text())[0]['method'] == 'ours'


def test_baseline_size_keeps_the_ratio(benchmark):
    args = argparse.Namespace(images=30000, texts=150000, baseline_max_gib=4.0)
    size = benchmark.baseline_size(args)
    assert size['scaled_down'] and 3 * 4 * size['images'] * size['texts'] <= 4 * 2 ** 30
    assert size['texts'] / size['images'] == pytest.approx(5, rel=1e-3)
    assert benchmark.baseline_size(argparse.Namespace(images=10, texts=50, baseline_max_gib=1))[
        'scaled_down'] is False
