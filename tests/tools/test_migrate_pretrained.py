"""tools/migrate_pretrained.py: a folder written by r2d2lib 0.1 becomes one that loads, bit-exactly."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from r2d2lib import load_model
from r2d2lib.io import PretrainedConfigError
from r2d2lib.registry import MODELS

SCRIPT = Path(__file__).resolve().parents[2] / 'tools' / 'migrate_pretrained.py'


def load_tool():
    spec = importlib.util.spec_from_file_location('migrate_pretrained', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def as_written_by_0_1(folder: Path, matching: bool) -> None:
    """Rewrite a current export the way r2d2lib 0.1 wrote it (training recipe in config.json)."""
    config = json.loads((folder / 'config.json').read_text())
    model = config['model']
    model.pop('temperature', None)
    state = load_file(str(folder / 'model.safetensors'))
    reached = float(f'{float(state["temperature.temp"]):.6g}')  # 0.1 wrote the temperature reached
    model.update(contrastive_loss=dict(type='GCPRLoss', temperature=reached, learnable=True,
                                       temperature_range=[0.001, 0.5]),
                 teacher=None, queue=None, fgd_loss=None, loss_weights=None, mlm_head=None,
                 fgr_loss=dict(type='FGRLoss'), enhanced_training=True)
    if matching:
        model.update(type='R2D2MatchingModel', hard_negatives=True)
        config['architecture'] = 'R2D2MatchingModel'
    config['r2d2lib_version'] = '0.1.0'
    (folder / 'config.json').write_text(json.dumps(config))
    state['contrastive_loss.temp'] = state.pop('temperature.temp')
    save_file(state, str(folder / 'model.safetensors'))


@pytest.mark.parametrize('matching', [False, True])
def test_a_0_1_folder_is_named_then_migrated_and_loads_bit_exactly(tiny_model_cfg, tmp_path, capsys,
                                                                   matching):
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_cfg)
    with torch.no_grad():
        model.temperature.temp.fill_(0.0123)
    folder = model.save_pretrained(tmp_path / 'old')
    as_written_by_0_1(folder, matching)
    with pytest.raises(PretrainedConfigError, match='tools/migrate_pretrained.py'):
        load_model(folder)
    assert load_tool().main([str(folder), '--out', str(tmp_path / 'new')]) == 0
    assert 'a R2D2Model that loads' in capsys.readouterr().out
    loaded = load_model(tmp_path / 'new')
    assert loaded.state_dict().keys() == {k for k in model.state_dict() if not k.startswith('objective.')}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
    config = json.loads((tmp_path / 'new' / 'config.json').read_text())
    assert config['model']['temperature'] == dict(type='Temperature', init=0.0123, learnable=True,
                                                  temperature_range=[0.001, 0.5])
    with pytest.raises(SystemExit, match='nothing to migrate'):
        load_tool().main([str(tmp_path / 'new')])
