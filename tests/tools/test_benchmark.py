"""tools/benchmark.py train-step runs training steps on synthetic inputs, as a user runs it."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
LOSS_KEYS = {'loss_gcpr', 'loss_fgr', 'loss_fgd', 'loss_mlm'}


def benchmark(*args, cwd=ROOT, timeout=600):
    result = subprocess.run([sys.executable, 'tools/benchmark.py', *args], cwd=cwd, capture_output=True,
                            text=True, env={'HF_HUB_OFFLINE': '1', 'PATH': '/usr/bin:/bin'}, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def test_train_step_on_the_demo_config(toy_data, tmp_path):
    out_json = tmp_path / 'out.json'
    out = benchmark('train-step', 'configs/demo/r2d2_tiny_shapes.py', '--batch-size', '4', '--iters', '2',
                    '--json', str(out_json), '--cfg-options',
                    f'model.data_preprocessor.tokenizer.vocab_file={toy_data / "vocab.txt"}')
    assert 's/iter' in out and 'growth' in out
    result = json.loads(out_json.read_text())
    assert result['iters'] == 2 and len(result['iterations']) == 2
    assert result['tokenizer_replaced'] is None  # the toy vocabulary file is kept
    for record in result['warmup_iterations'] + result['iterations']:
        assert LOSS_KEYS <= set(record['losses'])
        assert all(math.isfinite(record['losses'][key]) for key in LOSS_KEYS)
        assert record['seconds'] > 0
    assert result['summary']['ok'] and result['summary']['growth_mib'] <= 64
    assert result['params']['trainable'] > 0 and result['params']['teacher'] > 0


@pytest.mark.slow
def test_train_step_at_real_size(tmp_path):
    """R2D2 ViT-B (ViT-B/16, 12-layer BERT, two 6-layer cross encoders, teacher): ~6 GiB RSS on CPU."""
    out = benchmark('train-step', 'configs/r2d2/vitb_2.3m.py', '--batch-size', '2', '--iters', '2',
                    '--json', str(tmp_path / 'out.json'), timeout=1800)
    assert 'synthetic 21128-token vocabulary' in out
    result = json.loads((tmp_path / 'out.json').read_text())
    assert all(math.isfinite(v) for r in result['iterations'] for v in r['losses'].values())
