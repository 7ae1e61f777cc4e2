"""Every caption config trains and validates with CaptionMetric when shrunk to toy size (the Runner
path of tools/train.py): the LM loss is logged, the decoder moves, a frozen image encoder does not."""
import math
import uuid
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import r2d2lib  # noqa: F401
from r2d2lib.engine import StrictRunner

CONFIG_DIR = Path(__file__).parents[2] / 'configs' / 'caption'
CONFIGS = sorted(CONFIG_DIR.glob('*.py'))
IMAGE_CONFIG = dict(hidden_size=48, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                    image_size=32, patch_size=8)
TEXT_CONFIG = dict(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=64, max_position_embeddings=64)


def tiny_caption_config(path: Path, data_root: Path, pipeline32: list, work_dir: Path) -> Config:
    cfg = Config.fromfile(path)
    model = cfg.model
    model.image_encoder.config.update(IMAGE_CONFIG)
    model.image_encoder.pretrained = None
    model.text_decoder.config = TEXT_CONFIG
    model.image_proj = dict(type='ProjectionHead')  # 48 -> 32
    model.pretrained = None
    model.generation = dict(num_beams=2, max_length=8)
    model.data_preprocessor.update(image_size=32, max_length=40)
    model.data_preprocessor.tokenizer = dict(vocab_file=str(data_root / 'vocab.txt'))  # replaces a Hub name
    eval_pipeline = [*pipeline32[:2], dict(type='PackInputs', algorithm_keys=['text', 'image_idx', 'text_idx',
                                                                              'captions'])]
    cfg.train_dataloader = dict(batch_size=8, num_workers=0,
                                sampler=dict(type='DefaultSampler', shuffle=True),
                                collate_fn=dict(type='default_collate'),
                                dataset=dict(type='RetrievalDataset', data_root=str(data_root),
                                             ann_file='train.jsonl', pipeline=pipeline32))
    for loader in ('val_dataloader', 'test_dataloader'):
        cfg[loader] = dict(batch_size=4, num_workers=0,
                           sampler=dict(type='DefaultSampler', shuffle=False),
                           collate_fn=dict(type='default_collate'),
                           dataset=dict(type='ImageCaptionsDataset', pipeline=eval_pipeline, test_mode=True,
                                        dataset=dict(type='RetrievalDataset', data_root=str(data_root),
                                                     ann_file='test.jsonl')))
    cfg.val_evaluator = cfg.test_evaluator = dict(type='CaptionMetric', meteor=False)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10**6, by_epoch=False,
                                        save_last=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.log_processor = dict(by_epoch=False)
    cfg.optim_wrapper.optimizer.lr = 1e-3
    cfg.log_level = 'WARNING'
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'{work_dir.name}-{uuid.uuid4().hex[:8]}'
    return cfg


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.name)
def test_caption_config_trains_and_validates(path, toy_data, pipeline32, tmp_path):
    torch.set_num_threads(1)
    init_default_scope('r2d2lib')
    runner = StrictRunner.from_cfg(tiny_caption_config(path, toy_data, pipeline32, tmp_path / 'work'))
    model = runner.model
    decoder_before = model.text_decoder.model.bert.encoder.layer[0].crossattention.self.query.weight.clone()
    image_before = next(model.image_encoder.parameters()).clone()
    runner.train()
    losses = runner.message_hub.log_scalars['train/loss_lm'].data[0]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert not torch.equal(decoder_before,
                           model.text_decoder.model.bert.encoder.layer[0].crossattention.self.query.weight)
    frozen = Config.fromfile(path).model.image_encoder.get('frozen', False)
    assert torch.equal(image_before, next(model.image_encoder.parameters())) == frozen
    metrics = runner.val_loop.run()
    assert {'caption/BLEU-1', 'caption/BLEU-4', 'caption/ROUGE-L', 'caption/CIDEr-D'} <= set(metrics)
    assert all(0 <= value <= 1000 for value in metrics.values())
