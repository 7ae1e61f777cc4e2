"""A tiny text-to-image model (text width 32, UNet widths 16/32, 32 px) on the toy corpus's vocabulary."""
import copy

import pytest
import torch

TINY_GENERATOR = dict(
    type='TextToImageDiffusion',
    data_preprocessor=dict(type='ImageTextDataPreprocessor', image_size=32, mean=(0.5, 0.5, 0.5),
                           std=(0.5, 0.5, 0.5), tokenizer=dict(vocab_file=None), max_length=40),
    text_encoder=dict(type='HFBertEncoder', frozen=True,
                      config=dict(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=64)),
    unet=dict(type='DiffusersUNet', config=dict(block_out_channels=[16, 32], norm_num_groups=8,
                                                attention_head_dim=8)),
    noise_schedule=dict(num_train_timesteps=100),
    sampling=dict(steps=3, guidance=3.0),
    objective=dict(type='DiffusionObjective', condition_dropout=0.25),
)


@pytest.fixture
def generator_cfg(toy_data):
    cfg = copy.deepcopy(TINY_GENERATOR)
    cfg['data_preprocessor']['tokenizer']['vocab_file'] = str(toy_data / 'vocab.txt')
    return cfg


@pytest.fixture
def tiny_generator(generator_cfg):
    from mmengine.registry import init_default_scope

    from r2d2lib.registry import MODELS
    init_default_scope('r2d2lib')
    torch.manual_seed(0)
    model = MODELS.build(generator_cfg)
    model.init_weights()
    return model
