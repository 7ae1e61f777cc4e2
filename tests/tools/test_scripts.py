"""The command-line tools run end to end at miniature size, as a user runs them."""
import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from r2d2lib.models.vlp import R2D2Model

ROOT = Path(__file__).parents[2]


def run(*args, cwd=ROOT):
    result = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                            env={'HF_HUB_OFFLINE': '1', 'PATH': '/usr/bin:/bin'}, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
    """tools/demo.py on 16 training and 8 test images, two epochs."""
    tmp = tmp_path_factory.mktemp('demo')
    out = run('tools/demo.py', '--data', str(tmp / 'data'), '--work-dir', str(tmp / 'work'),
              '--epochs', '2', '--val-interval', '2', '--num-train', '16', '--num-test', '8')
    return tmp, out


def test_demo_prints_the_table_against_chance(demo_run):
    tmp, out = demo_run
    assert 'embedding similarity' in out and 're-ranked (top 16)' in out and 'chance' in out
    results = json.loads((tmp / 'work' / 'demo_results.json').read_text())
    # 8 test images, 16 captions: chance t2i R@1 = 1/8, i2t R@1 = 2/16
    assert results['chance']['t2i_R@1'] == pytest.approx(12.5)
    assert results['chance']['i2t_R@1'] == pytest.approx(12.5)
    assert results['chance']['t2i_R@10'] == pytest.approx(100.0)
    assert results.pop('training')['precision'] == 'fp32'
    env = results.pop('environment')  # what produced the numbers (docs/reproducibility.md)
    assert env['command'].startswith('python tools/demo.py --data ') and '--num-test 8' in env['command']
    assert env['torch'] == torch.__version__ and env['python'] == platform.python_version()
    assert len(env['r2d2lib_commit'].split('+')[0]) == 40 and 'environment: python ' in out
    twins = results.pop('twin_test')  # 8 test images: 4 swapped pairs, 2 captions each
    assert twins['captions'] == 16 and 0 <= twins['embedding'] <= 100 and 0 <= twins['reranked'] <= 100
    assert 'twin test (16 test captions' in out
    attention = results.pop('entity_attention')  # 8 test images x 2 objects, per cross-encoder layer
    assert set(attention) == {'layer 1', 'layer 2'} and attention['layer 1']['pairs'] == 16
    assert 0 <= attention['layer 2']['own_box_wins'] <= 100 and 'entity attention' in out
    model = R2D2Model.from_pretrained(tmp / 'work' / 'model')  # saved for the inferencer, weights-only
    assert model.text_image_encoder.width == 64
    for row in results.values():
        assert set(row) == {'i2t_R@1', 'i2t_R@5', 'i2t_R@10', 't2i_R@1', 't2i_R@5', 't2i_R@10', 'R@M'}


def test_demo_trains_on_object_captions(tmp_path):
    out = run('tools/demo.py', '--captions', 'objects', '--data', str(tmp_path / 'data'),
              '--work-dir', str(tmp_path / 'work'), '--epochs', '2', '--val-interval', '2',
              '--num-train', '8', '--num-test', '4')
    lines = (tmp_path / 'data' / 'test_objects.jsonl').read_text().splitlines()
    assert json.loads(lines[0])['captions'][0].startswith('有一个')
    results = json.loads((tmp_path / 'work' / 'demo_results.json').read_text())
    assert results['training']['captions'] == 'objects'
    # the run trained configs/demo/r2d2_tiny_shapes_objects.py (the draw's temperature is the objective's)
    from mmengine.config import Config
    trained = Config.fromfile(str(tmp_path / 'work' / 'r2d2_tiny_shapes_objects.py'))
    assert trained.model.objective.fgr.hard_negative_temperature == 1.0
    saved = json.loads((tmp_path / 'work' / 'model' / 'config.json').read_text())
    assert saved['model'].get('objective') is None  # exported without its training objective
    assert results['entity_attention']['layer 1']['pairs'] == 8
    assert 'entity attention' in out


def test_test_script_evaluates_the_demo_checkpoint_strictly(demo_run, tmp_path):
    tmp, _ = demo_run
    data = tmp / 'data'
    options = ['--cfg-options', f'test_dataloader.dataset.data_root={data}',
               f'model.data_preprocessor.tokenizer.vocab_file={data / "vocab.txt"}']
    out = run('tools/test.py', 'configs/demo/r2d2_tiny_shapes.py', str(tmp / 'work' / 'epoch_2.pth'),
              '--work-dir', str(tmp_path / 'test'), *options)
    assert 'retrieval/rerank_R@M' in out


def test_list_components_names_every_registry():
    out = run('tools/list_components.py')
    for name in ('ENCODERS', 'FUSIONS', 'LOSSES', 'MODELS', 'METRICS', 'LOOPS', 'HOOKS'):
        assert name in out
    assert 'GCPRLoss' in out and 'Global contrastive pre-ranking' in out
