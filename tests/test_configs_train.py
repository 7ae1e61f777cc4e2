"""Every model config trains for a few iterations when shrunk to toy size, with exactly its losses.

Each config under ``configs/`` (``_base_`` and the already tiny ``demo`` left out) keeps its
structure (loss types, teacher, queue, cross encoders, ratios, weights, optimizer, hooks) and only
loses width: 32-wide, one-layer towers at 32 px on the toy corpus. Three iterations must log a
finite ``loss_<name>`` for each of the objective's ``weights`` and nothing else, move every
trainable parameter, move the momentum teacher without gradients, fill the queue, and end with
the config's own validation (re-ranking iff there are cross encoders, ``save_best`` a logged
metric). The R2D2 ablation configs must differ from R2D2 ViT-L exactly where their names say.
"""
import math
import uuid
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope

import r2d2lib  # noqa: F401
from r2d2lib.engine import StrictRunner
from tests.datasets.miniature import write_zero_corpus

CONFIG_DIR = Path(__file__).parents[1] / 'configs'
# demo: already tiny; finetune, zero_shot: run on their own data formats in tests/test_finetune_configs.py;
# caption: captioners, shrunk and trained in tests/engine/test_caption_train.py; text2image: generators, in
# tests/engine/test_text2image_train.py
SKIPPED = {'_base_', 'demo', 'finetune', 'zero_shot', 'caption', 'text2image'}
CONFIGS = sorted(p for p in CONFIG_DIR.rglob('*.py') if not SKIPPED & set(p.relative_to(CONFIG_DIR).parts))
ABLATIONS = sorted((CONFIG_DIR / 'r2d2' / 'ablation').glob('*.py'))

ITERS, BATCH, QUEUE = 3, 8, 24
IMAGE_CONFIG = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                    image_size=32, patch_size=8)
TEXT_CONFIG = dict(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=64, max_position_embeddings=64)
CROSS = dict(width=32, kv_width=32, num_layers=1, num_heads=2)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: the toy models are too small to share, and the suite runs 2x faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config_id(path: Path) -> str:
    return path.relative_to(CONFIG_DIR).as_posix()


def shrink_model(model, vocab_file: str) -> None:
    """Make ``model`` (a config) tiny in place; which parts it has stays as configured."""
    assert model.image_encoder.type == 'HFCLIPVisionEncoder'
    model.image_encoder.config.update(IMAGE_CONFIG)
    model.image_encoder.pretrained = None
    model.text_encoder.config.update(TEXT_CONFIG)
    for key in ('text_image_encoder', 'image_text_encoder'):
        if model.get(key) is not None:
            model[key].update(CROSS)
    model.embed_dim = 16
    if (model.get('objective') or {}).get('queue') is not None:
        model.objective.queue.size = QUEUE
    model.data_preprocessor.update(image_size=32, max_length=40)
    # assigned, not merged: ConfigDict.update would keep the config's name_or_path, which wins
    model.data_preprocessor.tokenizer = dict(vocab_file=vocab_file)


def tiny_config(path: Path, data_root: Path, pipeline: list, work_dir: Path) -> Config:
    """The config at ``path``, shrunk, on the toy corpus, for ``ITERS`` iterations."""
    cfg = Config.fromfile(path)
    shrink_model(cfg.model, str(data_root / 'vocab.txt'))
    for loader, ann_file in (('train_dataloader', 'train.jsonl'), ('val_dataloader', 'test.jsonl'),
                             ('test_dataloader', 'test.jsonl')):
        cfg[loader].update(batch_size=BATCH, num_workers=0, persistent_workers=False)
        dataset = dict(data_root=str(data_root), ann_file=ann_file, pipeline=pipeline)
        if cfg[loader].dataset.type == 'ZeroCorpusDataset':  # its own table layout, generated in miniature
            dataset.update(write_zero_corpus(work_dir / 'zero', num_images=2 * BATCH)['train'])
        cfg[loader].dataset.update(dataset)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=ITERS, val_interval=1000)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint.update(interval=10**6, by_epoch=False, save_last=False)
    cfg.default_hooks.logger.interval = 1
    cfg.log_processor.by_epoch = False
    cfg.log_level = 'WARNING'
    cfg.work_dir = str(work_dir)
    # a unique name: runners built within one second would otherwise share a logger and message hub
    cfg.experiment_name = f'{work_dir.name}-{uuid.uuid4().hex[:8]}'
    return cfg


class SnapshotHook(Hook):
    """Copies every parameter when training starts (after ``init_weights`` and the teacher sync)."""

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        self.params = {k: p.detach().clone() for k, p in runner.model.named_parameters()}


@pytest.mark.parametrize('path', CONFIGS, ids=config_id)
def test_config_trains_at_tiny_size(path, toy_data, pipeline32, tmp_path):
    cfg = tiny_config(path, toy_data, pipeline32, tmp_path / 'work')
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    init_default_scope('r2d2lib')
    runner = StrictRunner.from_cfg(cfg)
    snapshot = SnapshotHook()
    runner.register_hook(snapshot)
    runner.train()
    model = runner.model
    assert runner.iter == ITERS
    # trained on the toy vocabulary (a hub tokenizer missing offline would be 5 special tokens)
    assert model.data_preprocessor.tokenizer_cfg == dict(vocab_file=str(toy_data / 'vocab.txt'))
    vocab_size = len((toy_data / 'vocab.txt').read_text(encoding='utf-8').splitlines())
    assert len(model.data_preprocessor.tokenizer) == vocab_size <= TEXT_CONFIG['vocab_size']

    # exactly the configured losses, logged every iteration, finite
    logged = {key[len('train/'):] for key in runner.message_hub.log_scalars
              if key.startswith('train/loss_')}
    objective, objective_cfg = model.objective, cfg.model.objective
    assert logged == {f'loss_{name}' for name in objective.weights}
    if objective_cfg.get('weights') is not None:
        assert set(objective.weights) == set(objective_cfg.weights)
    for key in logged | {'loss'}:
        values, _ = runner.message_hub.get_scalar(f'train/{key}').data
        assert len(values) == ITERS and all(math.isfinite(v) for v in values), (key, values)

    # mmengine's IterBasedTrainLoop validates at max_iters whatever val_interval says: the config's
    # val loop re-ranks exactly when the model has cross encoders, and save_best names a metric
    metrics = {key[len('val/'):] for key in runner.message_hub.log_scalars
               if key.startswith('val/retrieval/')}
    rerank = cfg.val_cfg.get('rerank', True)
    assert rerank == hasattr(model, 'match_features') == (cfg.model.get('image_text_encoder') is not None)
    assert 'retrieval/R@M' in metrics
    assert ('retrieval/rerank_R@M' in metrics) == rerank
    save_best = cfg.default_hooks.checkpoint.get('save_best')
    if save_best is not None:
        assert save_best in metrics
        assert list((tmp_path / 'work').glob('best_*.pth'))

    # every trainable parameter moved; a frozen image encoder (the paper's ViT) did not
    params = dict(model.named_parameters())
    trainable = [k for k, p in params.items() if p.requires_grad]
    assert trainable
    unchanged = [k for k in trainable if torch.equal(params[k], snapshot.params[k])]
    assert not unchanged, f'parameters that training did not change: {unchanged}'
    if cfg.model.image_encoder.get('frozen', False):
        for key, param in model.image_encoder.named_parameters():
            assert not param.requires_grad and param.grad is None, key
            assert torch.equal(param, snapshot.params[f'image_encoder.{key}']), key

    if objective.teacher is None:
        assert objective_cfg.get('teacher') is None
    else:
        assert objective_cfg.get('teacher') is not None
        students = objective.momentum_students(model)
        assert 'image_encoder' not in students or not model.image_encoder.frozen
        assert set(objective.teacher.teachers) == set(students)
        teacher_params = dict(objective.teacher.named_parameters(prefix='objective.teacher'))
        for key, param in teacher_params.items():
            assert not param.requires_grad and param.grad is None, key
        moved = [k for k, p in teacher_params.items() if not torch.equal(p, snapshot.params[k])]
        assert moved, 'the momentum teacher did not move'
        # started equal to its students (init_weights syncs them), now lags behind them
        for name, student in students.items():
            for key, param in student.named_parameters():
                start = snapshot.params[f'objective.teacher.teachers.{name}.{key}']
                assert torch.equal(start, snapshot.params[f'{name}.{key}']), (name, key)
        prefix = 'objective.teacher.teachers.'
        assert any(not torch.equal(params[k], params[k[len(prefix):]]) for k in moved)

    queue = getattr(objective, 'queue', None)
    if queue is None:
        assert objective_cfg.get('queue') is None
    else:
        assert queue.size == QUEUE
        assert int(queue.ptr) == (ITERS * BATCH) % QUEUE == 0
        assert bool((queue.image_ids >= 0).all())
        assert torch.allclose(queue.weights.sort().values,
                              torch.tensor([queue.decay ** i for i in (2, 1, 0)]).repeat_interleave(BATCH))


def model_of(name: str) -> dict:
    return Config.fromfile(CONFIG_DIR / 'r2d2' / name).to_dict()['model']


def test_ablations_differ_from_r2d2_exactly_where_named():
    assert {p.stem for p in ABLATIONS} == {'wo_et', 'wo_twd', 'wo_tgd', 'wo_fgd', 'r2d2_clip'}
    full = model_of('vitl_2.3m.py')
    objective = full['objective']
    assert full['type'] == 'R2D2Model' and objective['type'] == 'R2D2Objective'
    assert objective['enhanced_training'] is True
    assert objective['contrastive']['type'] == 'TargetDistillLoss'
    assert all(objective[key] is not None for key in ('teacher', 'queue', 'fgd'))
    gcpr = dict(type='GCPRLoss')
    three_losses = dict(gcpr=1.0, fgr=1.0, mlm=1.0)
    expected = {
        'wo_et': dict(enhanced_training=False),
        'wo_twd': dict(contrastive=gcpr, teacher=None, queue=None, fgd=None, weights=three_losses),
        'wo_tgd': dict(contrastive=gcpr, queue=None),
        'wo_fgd': dict(fgd=None, weights=three_losses),
    }
    for name, changes in expected.items():
        model = model_of(f'ablation/{name}.py')
        assert model == {**full, 'objective': {**objective, **changes}}, name  # the architecture is R2D2's
    assert model_of('ablation/wo_tgd.py')['objective']['teacher'] == objective['teacher']
    assert model_of('ablation/wo_fgd.py')['objective']['contrastive'] == objective['contrastive']

    clip = model_of('ablation/r2d2_clip.py')
    assert clip['type'] == 'DualEncoderModel'
    assert clip['objective'] == dict(type='ContrastiveObjective', contrastive=gcpr)
    assert {'text_image_encoder', 'image_text_encoder'}.isdisjoint(clip)
    # the dual-encoder part is R2D2 ViT-L's
    for key in ('data_preprocessor', 'image_encoder', 'text_encoder', 'embed_dim', 'projection_head'):
        assert clip[key] == full[key], key
