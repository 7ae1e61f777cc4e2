"""Every config in configs/ builds, offline, and names only registered components."""
import socket
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

import r2d2lib  # noqa: F401
from r2d2lib.registry import DATASETS, HOOKS, LOOPS, METRICS, MODELS, TRANSFORMS

CONFIG_DIR = Path(__file__).parents[1] / 'configs'
# finetune, zero_shot: built at real size and run on their own data formats in tests/test_finetune_configs.py
CONFIGS = sorted(p for p in CONFIG_DIR.rglob('*.py')
                 if not {'_base_', 'finetune', 'zero_shot'} & set(p.relative_to(CONFIG_DIR).parts))


@pytest.fixture
def no_network(monkeypatch):
    """Fail any attempt to open a network connection."""
    def refuse(*args, **kwargs):
        raise AssertionError('building a config tried to use the network')
    monkeypatch.setattr(socket.socket, 'connect', refuse)


def resolvable(registry, cfg) -> bool:
    init_default_scope('r2d2lib')
    return registry.get(cfg['type']) is not None


def test_configs_are_found():
    names = {p.relative_to(CONFIG_DIR).as_posix() for p in CONFIGS}
    assert {'r2d2/vitb_2.3m.py', 'demo/r2d2_tiny_shapes.py'} <= names


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.relative_to(CONFIG_DIR).as_posix())
def test_config_builds_without_network(path, no_network):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'r2d2lib'
    init_default_scope('r2d2lib')
    model = MODELS.build(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[loader]['dataset']
        assert resolvable(DATASETS, dataset), dataset['type']
        for step in dataset['pipeline']:
            assert resolvable(TRANSFORMS, step), step['type']
    for loop in ('val_cfg', 'test_cfg'):
        assert resolvable(LOOPS, cfg[loop]), cfg[loop]['type']
    assert resolvable(METRICS, cfg.val_evaluator)
    for hook in cfg.get('custom_hooks', []):
        assert resolvable(HOOKS, hook), hook['type']


def test_vitb_config_is_the_papers_setting():
    cfg = Config.fromfile(CONFIG_DIR / 'r2d2' / 'vitb_2.3m.py')
    init_default_scope('r2d2lib')
    model = MODELS.build(cfg.model)
    assert model.image_encoder.width == 768 and model.image_encoder.patch_size == 16
    assert model.image_encoder.image_size == 224 and model.image_encoder.frozen
    assert len(model.text_encoder.model.encoder.layer) == 12
    assert len(model.text_image_encoder.layer) == len(model.image_text_encoder.layer) == 6
    assert model.vision_proj.out_features == model.text_proj.out_features == 768
    assert cfg.train_dataloader.batch_size == 32
    assert cfg.model.data_preprocessor.max_length == 64
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert [s['type'] for s in cfg.param_scheduler] == ['LinearLR', 'CosineAnnealingLR']
