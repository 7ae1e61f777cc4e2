"""One trust policy for checkpoint files: a .pth whose pickle would run code is refused by tools/test.py,
load_from and the inferencer without the opt-in (naming it); r2d2lib's own training checkpoints (message hub
included) load weights-only; nothing is patched into mmengine."""
import importlib.util
import os
from pathlib import Path

import pytest
import torch
from mmengine.logging import HistoryBuffer

from r2d2lib import R2D2Inferencer
from r2d2lib.engine import StrictRunner
from r2d2lib.io import PickleRefusedError, load_checkpoint_file
from r2d2lib.io.checkpoint import history_buffer_method
from r2d2lib.registry import MODELS
from tests.engine.test_resume import runner_cfg
from tests.tools.test_test_script import write_config

ROOT = Path(__file__).resolve().parents[2]


class Payload:
    """Unpickling this runs ``touch <sentinel>``."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return os.system, (f'touch {self.sentinel}', )


@pytest.fixture
def hostile_pth(tmp_path, tiny_model_cfg):
    """A checkpoint of the tiny R2D2 whose pickle also carries a payload; and its sentinel."""
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_cfg)
    sentinel = tmp_path / 'PWNED'
    path = tmp_path / 'hostile.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict(), extra=Payload(sentinel)), path)
    return path, sentinel


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tools_test_refuses_a_pickle_payload_naming_the_flag(hostile_pth, tmp_path, tiny_model_cfg, toy_data,
                                                             pipeline32):
    path, sentinel = hostile_pth
    config = tmp_path / 'tiny.py'
    write_config(config, tiny_model_cfg, toy_data, pipeline32)
    with pytest.raises(PickleRefusedError, match=r'--allow-pickle') as info:
        load_tool('test').main([str(config), str(path), '--work-dir', str(tmp_path / 'work')])
    assert str(path) in str(info.value)
    assert not sentinel.exists()


def test_load_from_refuses_a_pickle_payload(hostile_pth, tmp_path, tiny_model_cfg, toy_data, pipeline32):
    path, sentinel = hostile_pth
    cfg = runner_cfg(tiny_model_cfg, pipeline32, toy_data, tmp_path / 'w', 1)
    cfg['load_from'] = str(path)
    runner = StrictRunner.from_cfg(cfg)
    with pytest.raises(PickleRefusedError, match='--allow-pickle'):
        runner.train()
    assert not sentinel.exists()


def test_the_inferencer_refuses_a_pickle_payload(hostile_pth, tmp_path, tiny_model_cfg, toy_data, pipeline32):
    path, sentinel = hostile_pth
    config = tmp_path / 'tiny.py'
    write_config(config, tiny_model_cfg, toy_data, pipeline32)
    with pytest.raises(PickleRefusedError, match='allow_pickle=True'):
        R2D2Inferencer(config, path)
    with pytest.raises(PickleRefusedError, match='allow_pickle=True'):
        R2D2Inferencer(MODELS.build(tiny_model_cfg), path)
    assert not sentinel.exists()


def test_with_the_opt_in_the_file_is_unpickled_fully(hostile_pth):
    path, sentinel = hostile_pth
    checkpoint = load_checkpoint_file(path, allow_pickle=True)  # the user said they trust it
    assert sentinel.exists() and set(checkpoint) == {'state_dict', 'meta', 'extra'}


def test_mmengine_message_hub_state_loads_weights_only_and_getattr_is_narrowed(tmp_path):
    buffer = HistoryBuffer([1.0, 3.0], [1, 1])
    path = tmp_path / 'hub.pth'
    torch.save(dict(message_hub=dict(log_scalars={'train/loss': buffer})), path)
    loaded = load_checkpoint_file(path)['message_hub']['log_scalars']['train/loss']
    assert loaded.mean() == 2.0 and loaded.max() == 3.0
    assert history_buffer_method(HistoryBuffer, 'min') is HistoryBuffer.min
    for obj, name in ((HistoryBuffer, '__init__'), (os, 'system'), (buffer, '__class__')):
        with pytest.raises(Exception, match='is not allowed'):
            history_buffer_method(obj, name)


def test_nothing_is_patched_into_mmengine():
    from mmengine.runner.checkpoint import CheckpointLoader
    loader = CheckpointLoader._schemes['']
    assert loader.__module__.startswith('mmengine'), loader
