"""The FSDP switch (``tools/train.py --fsdp``, config key ``fsdp``) on one process: every ViT-L config builds
sharded (on the meta device, nothing downloaded), the options and the runner refuse what cannot work by
name, and full state dicts go in and out of a sharded model bit for bit. (Training on 2 processes:
tests/tools/test_dist_fsdp.py.) About 30 s, most of it building the 26 ViT-L models."""
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch.distributed.tensor import DTensor, Shard

import r2d2lib  # noqa: F401
from r2d2lib.engine import StrictRunner
from r2d2lib.engine.fsdp import (
    fsdp_options,
    full_state,
    load_full_state,
    shard_model,
    shard_optimizer_state,
    shard_plan,
)
from r2d2lib.registry import MODELS
from tests.test_configs import no_network  # noqa: F401  (fixture)

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / 'tools'))
import train  # noqa: E402  (tools/train.py)

# text2image's ViT-L configs hold the R2D2 text encoder and a diffusers UNet, no ViT: not sharded by the
# default layer classes (docs/distributed.md)
VITL = sorted(p for p in (ROOT / 'configs').rglob('*vitl*.py') if not {'_base_', 'text2image'} & set(p.parts))


@pytest.fixture(scope='module')
def one_rank(tmp_path_factory):
    """A gloo process group of one rank (fully_shard needs a device mesh); destroyed afterwards."""
    if dist.is_initialized():
        pytest.skip('a process group is already initialised')
    store = dist.FileStore(str(tmp_path_factory.mktemp('store') / 'store'), 1)
    dist.init_process_group('gloo', store=store, rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def fsdp_config(path: Path, monkeypatch) -> Config:
    """The config as ``tools/train.py CONFIG --fsdp`` builds it."""
    monkeypatch.setattr(sys, 'argv', ['train.py', str(path), '--fsdp'])
    return train.build_config(train.parse_args())


def test_every_vitl_config_is_found():
    names = {p.relative_to(ROOT / 'configs').as_posix() for p in VITL}
    assert {'r2d2/vitl_23m.py', 'prd2/prd2_vitl_250m.py', 'caption/vitl_23m_coco_cn.py',
            'r2d2/finetune/vitl_23m_icm.py', 'r2d2/zero_shot/vitl_23m_muge.py'} <= names
    assert len(VITL) == 26


@pytest.mark.parametrize('path', VITL, ids=lambda p: p.relative_to(ROOT / 'configs').as_posix())
def test_the_fsdp_switch_builds_every_vitl_config(path, one_rank, monkeypatch, no_network):  # noqa: F811
    cfg = fsdp_config(path, monkeypatch)
    assert cfg.fsdp == {} and fsdp_options(cfg.fsdp)['reshard_after_forward'] is True
    init_default_scope('r2d2lib')
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    buffers = {name: buffer.shape for name, buffer in model.named_buffers()}
    plan = shard_plan(model, fsdp_options(cfg.fsdp)['layer_classes'])
    modules = dict(model.named_modules())
    kinds = Counter(type(modules[name]).__name__ for name in plan[:-1])
    # every transformer block of every tower is a unit: the ViT-L's 24, BERT's 12, 6 per cross encoder,
    # and the momentum teacher's copy of BERT (pre-training: 24 BertLayers)
    assert kinds['CLIPEncoderLayer'] == 24
    teacher = getattr(getattr(model, 'objective', None), 'teacher', None)
    assert kinds['BertLayer'] == 12 * (2 if teacher is not None else 1)
    assert kinds['CrossEncoderLayer'] == (12 if hasattr(model, 'cross_encode') else 0)
    total = sum(p.numel() for p in model.parameters())
    in_units = sum(p.numel() for name in plan[:-1] for p in modules[name].parameters())
    assert in_units / total > 0.9  # the root unit (embeddings, heads, projections) holds the rest

    shard_model(model, cfg.fsdp, 'cpu', src_rank=None)
    for name, param in model.named_parameters():
        if param.dim() == 0:  # the temperature: fully_shard refuses scalars; replicated
            assert name.endswith('temperature.temp') and not isinstance(param, DTensor), name
        else:
            assert isinstance(param, DTensor) and param.placements == (Shard(0),), name
    # the frozen image encoder is sharded too and stays frozen; buffers (queue, FgD centres) are not sharded
    assert not any(p.requires_grad for p in model.image_encoder.parameters())
    assert {name: buffer.shape for name, buffer in model.named_buffers()} == buffers
    assert not any(isinstance(buffer, DTensor) for buffer in model.buffers())


def test_bad_fsdp_options_are_refused_by_name():
    with pytest.raises(ValueError, match=r"fsdp has unknown keys \['wrap'\]"):
        fsdp_options(dict(wrap=True))
    with pytest.raises(ValueError, match='fsdp.param_dtype must be one of'):
        fsdp_options(dict(param_dtype='bf16'))
    with pytest.raises(ValueError, match='fsdp.layer_classes'):
        fsdp_options(dict(layer_classes='BertLayer'))
    with pytest.raises(ValueError, match=r"fsdp.layer_classes \['Block'\] matches no module of Linear"):
        shard_plan(torch.nn.Linear(2, 2), ['Block'])


def test_fsdp_trains_only_under_a_distributed_launcher_and_a_single_process_evaluates(tmp_path):
    runner = StrictRunner(model=torch.nn.Linear(2, 2), work_dir=str(tmp_path), cfg=dict(fsdp=dict()))
    assert type(runner.model) is torch.nn.Linear  # tools/test.py of a config with fsdp: not wrapped
    with pytest.raises(ValueError, match='config key fsdp needs a distributed launcher'):
        runner.train()
    with pytest.raises(ValueError, match=r"fsdp has unknown keys \['wrap'\]"):
        StrictRunner(model=torch.nn.Linear(2, 2), work_dir=str(tmp_path), cfg=dict(fsdp=dict(wrap=1)))


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)
        self.register_buffer('count', torch.zeros(2))

    def forward(self, x):
        return self.linear(x)


def test_full_state_dicts_round_trip_through_the_shards_bit_for_bit(one_rank):
    """The model's full state dict after sharding is the one before, and a full state dict loaded into the
    shards comes back unchanged; the optimizer's state as well (one rank: the checks of the conversion;
    the 2-rank cut is in tests/tools/test_dist_fsdp.py)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(Block(), Block())
    model.register_parameter('scale', torch.nn.Parameter(torch.tensor(2.0)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    shard_model(model, dict(layer_classes=['Block']), 'cpu')
    assert isinstance(model[0].linear.weight, DTensor) and not isinstance(model.scale, DTensor)
    after = full_state(model.state_dict())
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())

    changed = {k: v + 1 for k, v in before.items()}
    load_full_state(model, changed)
    assert all(torch.equal(full_state(model.state_dict())[k], v) for k, v in changed.items())

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    (model(torch.ones(3, 4)).sum() * model.scale).backward()
    optimizer.step()
    full = full_state(optimizer.state_dict())
    buffers = [s['momentum_buffer'] for s in full['state'].values()]
    assert not any(isinstance(b, DTensor) for b in buffers) and all(b.abs().sum() > 0 for b in buffers)
    sharded = shard_optimizer_state(optimizer, full)
    for idx, state in sharded['state'].items():
        param = [p for g in optimizer.param_groups for p in g['params']][idx]
        assert isinstance(state['momentum_buffer'], DTensor) == isinstance(param, DTensor)
    optimizer.load_state_dict(sharded)
    again = full_state(optimizer.state_dict())
    assert all(torch.equal(again['state'][i]['momentum_buffer'], s['momentum_buffer'])
               for i, s in full['state'].items())
