"""config.json is data: hostile files are refused, naming the key path, before anything they name is imported
or called (through a folder, a Hub id in the offline cache, R2D2Inferencer and the web demo server)."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch

from r2d2lib import R2D2Inferencer, R2D2Model, load_model
from r2d2lib.io import PretrainedConfigError, check_pretrained_config
from r2d2lib.registry import MODELS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def export(tmp_path_factory, toy_data):
    """A tiny R2D2 saved with save_pretrained (a valid folder to tamper with)."""
    from tests.conftest import TINY_MODEL
    cfg = copy.deepcopy(TINY_MODEL)
    cfg['data_preprocessor']['tokenizer']['vocab_file'] = str(toy_data / 'vocab.txt')
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp('export') / 'tiny'
    MODELS.build(cfg).save_pretrained(folder)
    return folder


def payloads(sentinel: Path, module_dir: Path):
    """(name, edit of config.json, the key path the error must name): each would create ``sentinel``."""
    module_dir.mkdir(exist_ok=True)
    (module_dir / 'r2d2lib_payload.py').write_text(f'open({str(sentinel)!r}, "w").close()\nThing = object\n')
    touch = f'touch {sentinel}'
    return [
        ('os.system', lambda c: c['model'].update(image_encoder=dict(type='os.system', command=touch)),
         "model.image_encoder.type: 'os.system' is not an r2d2lib component"),
        ('subprocess.run', lambda c: c['model'].update(text_encoder=dict(type='subprocess.run',
                                                                         args=['touch', str(sentinel)])),
         "model.text_encoder.type: 'subprocess.run' is not an r2d2lib component"),
        ('builtins.exec', lambda c: c['model'].update(projection_head=dict(
            type='builtins.exec', source=f'open({str(sentinel)!r}, "w").close()')),
         "model.projection_head.type: 'builtins.exec' is not an r2d2lib component"),
        ('mmengine-import', lambda c: c['model'].update(image_encoder=dict(
            type='mmengine.utils.import_modules_from_strings', imports=['r2d2lib_payload'])),
         "model.image_encoder.type: 'mmengine.utils.import_modules_from_strings' is not an r2d2lib "
         'component'),
        ('architecture-module', lambda c: c.update(architecture='r2d2lib_payload.Thing'),
         "architecture: 'r2d2lib_payload.Thing' is not an r2d2lib model"),
        ('type-in-a-list', lambda c: c['model']['text_image_encoder'].update(
            layers=[{'type': 'subprocess.run', 'args': ['touch', str(sentinel)]}]),
         r"model.text_image_encoder.layers\[0\].type: 'subprocess.run' is not an r2d2lib component"),
        ('scope-switch', lambda c: c['model']['image_text_encoder'].update(_scope_='mmengine'),
         r'model.image_text_encoder._scope_: keys starting with "_"'),
        ('init-cfg', lambda c: c['model']['text_encoder'].update(
            init_cfg=dict(type='Pretrained', checkpoint=str(sentinel))),
         "model.text_encoder.init_cfg: must be null"),
    ]


PAYLOAD_IDS = ['os.system', 'subprocess.run', 'builtins.exec', 'mmengine-import', 'architecture-module',
               'type-in-a-list', 'scope-switch', 'init-cfg']


def hostile_folder(export, tmp_path, monkeypatch, which):
    """A copy of ``export`` whose config.json carries payload ``which``; its sentinel and key path."""
    sentinel, modules = tmp_path / 'PWNED', tmp_path / 'modules'
    name, edit, key = dict((p[0], p) for p in payloads(sentinel, modules))[which]
    monkeypatch.syspath_prepend(str(modules))  # an importable module whose import creates the sentinel
    folder = tmp_path / 'hostile'
    folder.mkdir()
    for path in export.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    config = json.loads((folder / 'config.json').read_text())
    edit(config)
    (folder / 'config.json').write_text(json.dumps(config))
    return folder, sentinel, key


@pytest.mark.parametrize('which', PAYLOAD_IDS)
def test_a_hostile_folder_is_refused_naming_the_key_and_runs_nothing(export, tmp_path, monkeypatch, which):
    folder, sentinel, key = hostile_folder(export, tmp_path, monkeypatch, which)
    for load in (R2D2Model.from_pretrained, load_model, R2D2Inferencer):
        with pytest.raises(PretrainedConfigError, match=key) as info:
            load(folder)
        assert str(folder / 'config.json') in str(info.value)
        assert not sentinel.exists()
    assert 'r2d2lib_payload' not in sys.modules


@pytest.mark.parametrize('which', ['os.system', 'architecture-module', 'type-in-a-list'])
def test_a_hostile_hub_repo_in_the_offline_cache_is_refused(export, tmp_path, monkeypatch, which):
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
    folder, sentinel, key = hostile_folder(export, tmp_path, monkeypatch, which)
    commit = 'c' * 40
    repo = tmp_path / 'cache' / 'models--evil--model'
    (repo / 'snapshots').mkdir(parents=True)
    folder.rename(repo / 'snapshots' / commit)
    (repo / 'refs').mkdir()
    (repo / 'refs' / 'main').write_text(commit)
    with pytest.raises(PretrainedConfigError, match=key):
        load_model('evil/model', cache_dir=tmp_path / 'cache')
    with pytest.raises(PretrainedConfigError, match=key):
        R2D2Model.from_pretrained('evil/model', cache_dir=tmp_path / 'cache')
    assert not sentinel.exists()


@pytest.mark.parametrize('which', ['os.system', 'mmengine-import'])
def test_the_web_demo_server_refuses_a_hostile_model(export, tmp_path, monkeypatch, which, toy_data):
    folder, sentinel, key = hostile_folder(export, tmp_path, monkeypatch, which)
    env = dict(os.environ, PYTHONPATH=f'{tmp_path / "modules"}{os.pathsep}{ROOT}', HF_HUB_OFFLINE='1')
    result = subprocess.run([sys.executable, '-m', 'demo.server', '--model', str(folder), '--images',
                             str(toy_data / 'images'), '--port', '1'], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert 'PretrainedConfigError' in result.stderr and key.replace('\\', '') in result.stderr
    assert not sentinel.exists()


def test_the_schema_accepts_what_save_pretrained_writes_and_names_legacy_files(export):
    config = json.loads((export / 'config.json').read_text())
    assert check_pretrained_config(config, 'x') is config
    legacy = copy.deepcopy(config)
    legacy['model']['contrastive_loss'] = dict(type='GCPRLoss', temperature=0.05)
    legacy['r2d2lib_version'] = '0.1.0'
    with pytest.raises(PretrainedConfigError,
                       match=r'written by r2d2lib 0\.1\.0.*\n.*tools/migrate_pretrained\.py'):
        check_pretrained_config(legacy, 'old/config.json')
    for edit, message in [
            (lambda c: c.update(extra=1), r"unknown top-level keys \['extra'\]"),
            (lambda c: c['model'].update(objective=dict(type='R2D2Objective')),
             'model.objective: must be null'),
            (lambda c: c['model']['data_preprocessor'].update(tokenizer=dict(name_or_path='evil/tokenizer')),
             'tokenizer must be'),
            (lambda c: c['model']['image_encoder'].update(type='R2D2Model.from_pretrained'),
             "'R2D2Model.from_pretrained' is not an r2d2lib component"),
            # mmengine's class, not r2d2lib's
            (lambda c: c['model']['image_encoder'].update(type='BaseDataPreprocessor'),
             "'BaseDataPreprocessor' is not an r2d2lib component")]:
        bad = copy.deepcopy(config)
        edit(bad)
        with pytest.raises(PretrainedConfigError, match=message):
            check_pretrained_config(bad, 'x/config.json')
