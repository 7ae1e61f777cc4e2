"""Every text-to-image config trains and validates with Text2ImageMetric when shrunk to toy size (the Runner
path of tools/train.py): the diffusion loss is logged, the UNet moves, the frozen text encoder (and VAE)
do not, and validation reports R-precision, similarity and the Frechet distance."""
import math
import uuid
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import r2d2lib  # noqa: F401
from r2d2lib.engine import StrictRunner
from r2d2lib.registry import MODELS

CONFIG_DIR = Path(__file__).parents[2] / 'configs' / 'text2image'
CONFIGS = sorted(CONFIG_DIR.glob('*.py'))
TEXT_CONFIG = dict(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=64, max_position_embeddings=64)
UNET_CONFIG = dict(block_out_channels=[16, 32], down_block_types=['DownBlock2D', 'CrossAttnDownBlock2D'],
                   up_block_types=['CrossAttnUpBlock2D', 'UpBlock2D'], layers_per_block=1,
                   attention_head_dim=8, norm_num_groups=8)
VAE_CONFIG = dict(block_out_channels=[8, 16], down_block_types=['DownEncoderBlock2D'] * 2,
                  up_block_types=['UpDecoderBlock2D'] * 2, latent_channels=4, norm_num_groups=4,
                  sample_size=32)


def test_configs_are_found():
    assert {p.name for p in CONFIGS} >= {'t2i_tiny_shapes.py', 'latent_vitl_23m_coco_cn.py'}


def tiny_config(path: Path, data_root: Path, pipeline32: list, work_dir: Path, evaluator: str) -> Config:
    cfg = Config.fromfile(path)
    model = cfg.model
    model.text_encoder.config = TEXT_CONFIG
    model.text_encoder.pretrained = None
    model.unet.config = UNET_CONFIG
    if model.get('vae') is not None:
        model.vae.config = VAE_CONFIG
        model.vae.pretrained = None
        model.vae.subfolder = None
    model.pretrained = None
    model.noise_schedule.num_train_timesteps = 50
    model.sampling = dict(model.sampling, steps=2)
    model.data_preprocessor.update(image_size=32, max_length=40)
    model.data_preprocessor.tokenizer = dict(vocab_file=str(data_root / 'vocab.txt'))
    cfg.train_dataloader = dict(batch_size=4, num_workers=0,
                                sampler=dict(type='DefaultSampler', shuffle=True),
                                collate_fn=dict(type='default_collate'),
                                dataset=dict(type='RetrievalDataset', data_root=str(data_root),
                                             ann_file='train.jsonl', pipeline=pipeline32))
    for loader in ('val_dataloader', 'test_dataloader'):
        cfg[loader] = dict(batch_size=4, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
                           collate_fn=dict(type='default_collate'),
                           dataset=dict(type='ImageCaptionsDataset', pipeline=pipeline32, test_mode=True,
                                        dataset=dict(type='RetrievalDataset', data_root=str(data_root),
                                                     ann_file='test.jsonl')))
    cfg.val_evaluator = cfg.test_evaluator = dict(type='Text2ImageMetric', evaluator=evaluator, rerank_k=2)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10**6, by_epoch=False,
                                        save_last=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.custom_hooks = []
    cfg.log_processor = dict(by_epoch=False)
    cfg.optim_wrapper.optimizer.lr = 1e-3
    cfg.log_level = 'WARNING'
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'{work_dir.name}-{uuid.uuid4().hex[:8]}'
    return cfg


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.name)
def test_text2image_config_trains_and_validates(path, toy_data, pipeline32, tiny_model_cfg, tmp_path):
    torch.set_num_threads(1)
    init_default_scope('r2d2lib')
    evaluator = MODELS.build({k: v for k, v in tiny_model_cfg.items() if k != 'objective'})
    evaluator.save_pretrained(tmp_path / 'r2d2')
    runner = StrictRunner.from_cfg(tiny_config(path, toy_data, pipeline32, tmp_path / 'work',
                                               str(tmp_path / 'r2d2')))
    model = runner.model
    unet_before = model.unet.model.conv_in.weight.clone()
    text_before = next(model.text_encoder.parameters()).clone()
    runner.train()
    losses = runner.message_hub.log_scalars['train/loss_diffusion'].data[0]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert not torch.equal(unet_before, model.unet.model.conv_in.weight)
    assert torch.equal(text_before, next(model.text_encoder.parameters()))
    metrics = runner.val_loop.run()
    assert {'text2image/R-precision', 'text2image/R-precision_reranked', 'text2image/similarity',
            'text2image/frechet_r2d2', 'text2image/real_R-precision'} <= set(metrics)
    assert metrics['text2image/R-precision_chance'] == pytest.approx(100 / 8)  # 8 test images, first captions
    assert all(math.isfinite(v) for v in metrics.values())
