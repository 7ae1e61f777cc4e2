"""Fine-tuning and zero-shot configs: each builds at real size, and each runs on a miniature copy of its data.

Every config under ``configs/r2d2/finetune`` and ``configs/r2d2/zero_shot``:

* builds its model at real size on the meta device (nothing downloaded, no memory), with exactly the
  tensors of the model zoo's inference form, so that the pre-trained weights load strictly; names only
  registered datasets, transforms, loops and metrics; keeps the paper's protocol (10 epochs, splits);
* runs on a miniature copy of its dataset's released layout (``tests/datasets/miniature.py``) with the
  model shrunk as ``tests/test_configs_train.py`` shrinks it: one training iteration and the config's
  validation loop for fine-tuning configs, the test loop for zero-shot configs.
"""
import copy
import functools
import math
import uuid
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import r2d2lib  # noqa: F401
from r2d2lib.converters.building import expected_shapes
from r2d2lib.converters.official_r2d2 import inference_model_config
from r2d2lib.engine import StrictRunner
from r2d2lib.registry import DATASETS, LOOPS, METRICS, MODELS, TRANSFORMS
from tests.datasets import miniature
from tests.test_configs import no_network  # noqa: F401  (fixture)
from tests.test_configs_train import shrink_model

CONFIG_DIR = Path(__file__).parents[1] / 'configs'
FINETUNE = sorted((CONFIG_DIR / 'r2d2' / 'finetune').glob('*.py'))
ZERO_SHOT = sorted((CONFIG_DIR / 'r2d2' / 'zero_shot').glob('*.py'))
RETRIEVAL_SETS = ('flickr30k_cn', 'flickr30k_cna', 'coco_cn', 'aic_icc', 'muge', 'icr', 'iqr')
MATCHING_SETS = ('icm', 'iqm')
BATCH = 4


def config_id(path: Path) -> str:
    return path.relative_to(CONFIG_DIR).as_posix()


def dataset_of(path: Path) -> str:
    """The downstream set a config is for: its name after ``vit?_23m_``."""
    return path.stem.split('_23m_', 1)[1]


def test_every_downstream_set_has_its_configs():
    assert [p.stem for p in FINETUNE if p.stem.startswith('vitl')] == sorted(
        f'vitl_23m_{name}' for name in RETRIEVAL_SETS + MATCHING_SETS)
    # ViT-B: the five official fine-tuned checkpoints of the model zoo
    assert sorted(p.stem for p in FINETUNE if p.stem.startswith('vitb')) == [
        'vitb_23m_flickr30k_cna', 'vitb_23m_icm', 'vitb_23m_icr', 'vitb_23m_iqm', 'vitb_23m_iqr']
    # Table 4's nine sets, plus zero-shot classification over an image folder
    assert sorted(p.stem for p in ZERO_SHOT) == sorted(
        [f'vitl_23m_{name}' for name in RETRIEVAL_SETS + MATCHING_SETS] + ['vitl_23m_classification'])


# ----------------------------------------------------------------- real size
def resolvable(registry, cfg) -> bool:
    return registry.get(cfg['type']) is not None


@functools.lru_cache(maxsize=None)
def zoo_shapes(vit: str) -> dict:
    """Tensor shapes of the pre-trained R2D2 ``vit`` (23M) in the model zoo's inference form."""
    return expected_shapes(inference_model_config(f'r2d2_{vit}', CONFIG_DIR / 'r2d2' / f'{vit}_23m.py'))


@pytest.mark.parametrize('path', FINETUNE + ZERO_SHOT, ids=config_id)
def test_config_builds_at_real_size_with_the_zoo_models_tensors(path, no_network):  # noqa: F811
    cfg = Config.fromfile(path)
    init_default_scope('r2d2lib')
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    vit = path.stem.split('_')[0]
    assert (model.image_encoder.width, model.image_encoder.patch_size) == {'vitl': (1024, 14),
                                                                          'vitb': (768, 16)}[vit]
    assert model.image_encoder.frozen and model.image_encoder.image_size == 224
    objective = model.objective
    assert getattr(objective, 'teacher', None) is None and getattr(objective, 'queue', None) is None
    assert getattr(objective, 'fgd', None) is None and getattr(objective, 'mlm_head', None) is None
    # exactly the tensors of the pre-trained model in inference form (the zoo model, the converted
    # official checkpoint): `load_from` a checkpoint of it is strict and complete
    assert {k: v.shape for k, v in model.state_dict().items()} == zoo_shapes(vit)  # no objective state
    assert cfg.load_from == f'checkpoints/r2d2_{vit}_23m.pth'

    matching = dataset_of(path) in MATCHING_SETS
    assert type(model).__name__ == 'R2D2Model'
    assert type(objective).__name__ == ('MatchingObjective' if matching else 'R2D2Objective')
    assert set(objective.weights) == ({'fgr'} if matching else {'gcpr', 'fgr'})  # Appendix C
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(loader) is None:
            continue
        dataset = cfg[loader]['dataset']
        assert resolvable(DATASETS, dataset), dataset['type']
        for step in dataset.get('pipeline', []):
            assert resolvable(TRANSFORMS, step), step['type']
    for key in ('val_cfg', 'test_cfg'):
        if cfg.get(key) is not None:
            assert resolvable(LOOPS, cfg[key]), cfg[key]['type']
    for key in ('val_evaluator', 'test_evaluator'):
        if cfg.get(key) is not None:
            assert resolvable(METRICS, cfg[key]), cfg[key]['type']

    if path in ZERO_SHOT:  # no training part at all: tools/test.py only
        for key in ('train_dataloader', 'train_cfg', 'optim_wrapper', 'param_scheduler'):
            assert cfg.get(key) is None, key
    else:  # Sec. 4.1: 10 epochs, batch 32 per GPU, Adam with cosine decay after a linear warm-up
        assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=10, val_interval=1)
        assert cfg.train_dataloader.batch_size == 32
        assert cfg.optim_wrapper.optimizer.type == 'AdamW'
        assert [s['type'] for s in cfg.param_scheduler] == ['LinearLR', 'CosineAnnealingLR']
        assert cfg.param_scheduler[-1]['end'] == 10


def finetune_config(name: str) -> Config:
    return Config.fromfile(CONFIG_DIR / 'r2d2' / 'finetune' / f'vitl_23m_{name}.py')


def test_splits_follow_appendix_c():
    def test_set(name):
        return finetune_config(name).test_dataloader.dataset

    # AIC-ICC: the first 10,000 validation images (and their 50,000 captions), also for validation
    aic = finetune_config('aic_icc')
    assert aic.val_dataloader.dataset == aic.test_dataloader.dataset
    assert aic.test_dataloader.dataset.max_images == 10000
    assert 'validation' in aic.test_dataloader.dataset.ann_file
    assert aic.train_dataloader.dataset.get('max_images') is None
    # Flickr30k-CNA: trained on CNA, tested on the Flickr30k-CN test set
    cna = finetune_config('flickr30k_cna')
    assert cna.train_dataloader.dataset.ann_file == 'train/flickr30k_cna_train.txt'
    assert test_set('flickr30k_cna') == test_set('flickr30k_cn')
    assert test_set('flickr30k_cn').ann_file.startswith('flickr30kzhmbosontest/')  # the human-translated test
    assert test_set('coco_cn').split_file.endswith('coco-cn_test.txt')
    # validation sets where the paper reports them
    for name in ('icr', 'iqr', 'icm', 'iqm'):
        assert '/val/' in test_set(name).ann_file, name
    assert test_set('muge').ann_file == 'valid_texts.jsonl'
    # MUGE is text-to-image only
    assert finetune_config('muge').test_evaluator.directions == ('t2i', )


# ----------------------------------------------------------------- miniature runs
def write_miniature(name: str, root: Path) -> dict:
    """``{split: dataset kwargs}`` of a miniature copy of downstream set ``name`` (train, val, test)."""
    if name == 'flickr30k_cn':
        return miniature.write_flickr30k_cn(root)
    if name == 'flickr30k_cna':  # CNA's train and val, Flickr30k-CN's test
        return {**miniature.write_flickr30k_cna(root / 'cna'),
                'test': miniature.write_flickr30k_cn(root / 'cn')['test']}
    if name == 'coco_cn':
        return miniature.write_coco_cn(root)
    if name == 'aic_icc':
        kwargs = miniature.write_aic_icc(root)
        return {**kwargs, 'test': kwargs['val']}
    if name == 'muge':
        kwargs = miniature.write_muge(root)
        return {'train': kwargs['train'], 'val': kwargs['valid'], 'test': kwargs['valid']}
    if name in ('icr', 'iqr', 'icm', 'iqm'):
        kwargs = miniature.write_zero_downstream(root, task=name)
        return {**kwargs, 'test': kwargs['val']}
    if name == 'classification':
        return miniature.write_zero_shot(root)
    raise KeyError(name)


def shrink_pipeline(pipeline: list) -> list:
    """The config's pipeline at 32 px (same steps, same packed keys)."""
    pipeline = copy.deepcopy(pipeline)
    for step in pipeline:
        if step['type'] == 'RandomResizedCrop':
            step['scale'] = 32
        elif step['type'] == 'Resize':
            step['scale'] = (32, 32)
    return pipeline


def miniature_config(path: Path, root: Path, vocab_file: str, work_dir: Path) -> Config:
    """The config at ``path`` shrunk to tiny size, on a miniature copy of its data, one iteration."""
    cfg = Config.fromfile(path)
    shrink_model(cfg.model, vocab_file)
    splits = write_miniature(dataset_of(path), root)
    for loader, split in (('train_dataloader', 'train'), ('val_dataloader', 'val'),
                          ('test_dataloader', 'test')):
        if cfg.get(loader) is None:
            continue
        dataset = cfg[loader].dataset
        # the config's own keys for this split: the miniature writer's name the same files
        for key, value in splits[split].items():
            if key in ('ann_file', 'image_list', 'split_file', 'img_file'):
                assert Path(str(dataset[key])).name == Path(value).name, (loader, key)
        dataset.update(splits[split])
        dataset.pipeline = shrink_pipeline(dataset.pipeline)
        cfg[loader].update(batch_size=BATCH, num_workers=0, persistent_workers=False)
    cfg.load_from = None  # no pre-trained weights here
    if cfg.get('train_cfg') is not None:
        cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1, val_interval=1)
        cfg.param_scheduler = []
        cfg.default_hooks.checkpoint.update(interval=10**6, by_epoch=False, save_last=False)
        cfg.log_processor.by_epoch = False
    cfg.default_hooks.logger.interval = 1
    cfg.log_level = 'WARNING'
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'{work_dir.name}-{uuid.uuid4().hex[:8]}'
    return cfg


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# the ViT-B fine-tuning configs differ from the ViT-L ones only in the tower, which shrinking replaces
RUNS = [p for p in FINETUNE if p.stem.startswith('vitl')] + ZERO_SHOT


@pytest.mark.parametrize('path', RUNS, ids=config_id)
def test_config_runs_on_a_miniature_copy_of_its_data(path, toy_data, tmp_path):
    cfg = miniature_config(path, tmp_path / 'data', str(toy_data / 'vocab.txt'), tmp_path / 'work')
    init_default_scope('r2d2lib')
    runner = StrictRunner.from_cfg(cfg)
    if path in ZERO_SHOT:
        metrics = runner.test()
    else:
        runner.train()
        assert runner.iter == 1
        losses = {key for key in runner.message_hub.log_scalars if key.startswith('train/loss_')}
        assert losses == {f'train/loss_{name}' for name in runner.model.objective.weights}
        for key in losses:
            assert math.isfinite(runner.message_hub.get_scalar(key).current()), key
        metrics = {key[len('val/'):]: runner.message_hub.get_scalar(key).current()
                   for key in runner.message_hub.log_scalars if key.startswith('val/')}
        save_best = cfg.default_hooks.checkpoint.save_best
        assert save_best in metrics, (save_best, sorted(metrics))
        assert list((tmp_path / 'work').glob('best_*.pth'))
    name = dataset_of(path)
    if name in MATCHING_SETS:
        assert 0.0 <= metrics['matching/AUC'] <= 100.0
    elif name == 'classification':
        assert 0.0 <= metrics['zero_shot/top1'] <= 100.0
    else:
        assert 0.0 <= metrics['retrieval/R@M'] <= 100.0
        assert ('retrieval/i2t_R@1' in metrics) == (name != 'muge')  # MUGE: text-to-image only


def test_pretrained_weights_load_strictly_and_a_missing_file_is_named(toy_data, tmp_path):
    path = CONFIG_DIR / 'r2d2' / 'zero_shot' / 'vitl_23m_icr.py'
    cfg = miniature_config(path, tmp_path / 'data', str(toy_data / 'vocab.txt'), tmp_path / 'work')
    init_default_scope('r2d2lib')
    runner = StrictRunner.from_cfg(cfg)
    with pytest.raises(FileNotFoundError, match='checkpoints/r2d2_vitl_23m.pth'):
        runner.load_checkpoint('checkpoints/r2d2_vitl_23m.pth')  # the configs' load_from, not made here
    # a checkpoint of the model's own keys (the zoo's inference form) loads ...
    state = {k: v.clone() + 1 for k, v in runner.model.state_dict().items()}
    torch.save({'state_dict': state}, tmp_path / 'pretrained.pth')
    runner.load_checkpoint(str(tmp_path / 'pretrained.pth'))
    assert all(torch.equal(v, state[k]) for k, v in runner.model.state_dict().items())
    # ... and one with pre-training state the fine-tuning model lacks is refused, naming the keys
    torch.save({'state_dict': {**state, 'objective.teacher.teachers.text_proj.weight': torch.zeros(1)}},
               tmp_path / 'pretraining.pth')
    with pytest.raises(RuntimeError, match='objective.teacher.teachers.text_proj.weight'):
        runner.load_checkpoint(str(tmp_path / 'pretraining.pth'))
