"""Same seed, same machine, same numbers: the demo config trained twice in separate processes ends with
bit-identical weights and optimizer state (docs/reproducibility.md).

Each run is ``tools/train.py configs/demo/r2d2_tiny_shapes.py`` as a user runs it (the full objective
of Eq. 8 with the momentum teacher, the queue, hard negatives, MLM masking), on the 32-image toy
corpus (64 pairs) in the demo's batches of 32: 2 epochs, 4 iterations. The processes start with
different hash seeds, so nothing may depend on set or dict-of-hash order. Like tools/demo.py, the runs set
``randomness.deterministic=True``: without it, two threads give weights that differ by up to 1e-4
after 4 iterations (the backward of advanced indexing accumulates in thread order on CPU).
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).parents[1]
CONFIG = ROOT / 'configs' / 'demo' / 'r2d2_tiny_shapes.py'


def train(toy_data: Path, work_dir: Path, hash_seed: str) -> subprocess.Popen:
    options = [f'{loader}.dataset.data_root={toy_data}'
               for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    options += [f'model.data_preprocessor.tokenizer.vocab_file={toy_data / "vocab.txt"}',
                'train_cfg.max_epochs=2', 'default_hooks.checkpoint.interval=2', 'randomness.seed=0',
                'randomness.deterministic=True', 'log_level=WARNING']
    # CUBLAS_WORKSPACE_CONFIG: deterministic cuBLAS where there is a GPU (tools/demo.py sets it too)
    env = dict(os.environ, HF_HUB_OFFLINE='1', PYTHONHASHSEED=hash_seed, CUBLAS_WORKSPACE_CONFIG=':4096:8')
    return subprocess.Popen([sys.executable, 'tools/train.py', str(CONFIG), '--work-dir', str(work_dir),
                             '--cfg-options', *options], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_two_processes_train_the_demo_config_to_identical_weights(toy_data, tmp_path):
    runs = [train(toy_data, tmp_path / 'a', '1'), train(toy_data, tmp_path / 'b', '2')]
    for run in runs:  # concurrently
        out, _ = run.communicate(timeout=600)
        assert run.returncode == 0, out[-3000:]
    a, b = (torch.load(tmp_path / name / 'epoch_2.pth', map_location='cpu', weights_only=False)
            for name in ('a', 'b'))
    assert a['meta']['iter'] == b['meta']['iter'] == 4
    steps = {float(state['step']) for state in a['optimizer']['state'].values()}
    assert steps == {4.0}  # every parameter took the 4 optimizer steps that are compared below
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for suffix in ('queue.image_feats', 'queue.ptr', 'text_centre.centre'):  # the full objective's state
        assert any(key.endswith(suffix) for key in a['state_dict']), suffix
    for key, value in a['state_dict'].items():
        assert torch.equal(value, b['state_dict'][key]), key
    for index, state in a['optimizer']['state'].items():
        for name, value in state.items():
            assert torch.equal(value, b['optimizer']['state'][index][name]), (index, name)


def test_the_demo_trains_deterministically():
    spec = importlib.util.spec_from_file_location('demo_script', ROOT / 'tools' / 'demo.py')
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    args = demo.parse_args(['--seed', '3'])  # the parser make demo uses, so the test cannot drift from it
    cfg = demo.build_config(args)
    assert cfg.randomness.deterministic is True and cfg.randomness.seed == 3
    assert os.environ['CUBLAS_WORKSPACE_CONFIG'] in (':4096:8', ':16:8')
