"""Shared fixtures: a miniature toy-shapes corpus and a tiny R2D2 config (width 32, 32 px)."""
import copy
import os
import socket

import pytest

os.environ.setdefault('HF_HUB_OFFLINE', '1')  # nothing in the suite may reach the network


@pytest.fixture(scope='session')
def toy_data(tmp_path_factory):
    """A toy-shapes corpus of 32 train and 8 test images (2 captions each), 32 px."""
    from r2d2lib.datasets.toy_shapes import generate_toy_shapes
    out = tmp_path_factory.mktemp('toy_shapes')
    generate_toy_shapes(str(out), num_train=32, num_test=8, image_size=32, seed=0)
    return out


TINY_MODEL = dict(
    type='R2D2Model',
    data_preprocessor=dict(type='ImageTextDataPreprocessor', image_size=32,
                           tokenizer=dict(vocab_file=None), max_length=40),
    image_encoder=dict(type='HFCLIPVisionEncoder',
                       config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=1,
                                   num_attention_heads=2, image_size=32, patch_size=8)),
    text_encoder=dict(type='HFBertEncoder',
                      config=dict(vocab_size=64, hidden_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=64,
                                  max_position_embeddings=64)),
    text_image_encoder=dict(type='CrossEncoder', width=32, kv_width=48, num_layers=1, num_heads=2),
    image_text_encoder=dict(type='CrossEncoder', width=32, kv_width=32, num_layers=1, num_heads=2),
    embed_dim=24,
    # GCPR + FGR
    objective=dict(type='R2D2Objective', contrastive=dict(type='GCPRLoss'), fgr=dict(type='FGRLoss')),
)


@pytest.fixture
def tiny_model_cfg(toy_data):
    """Config dict of a tiny R2D2 (ViT width 48 so the cross encoders' kv widths differ)."""
    cfg = copy.deepcopy(TINY_MODEL)
    cfg['data_preprocessor']['tokenizer']['vocab_file'] = str(toy_data / 'vocab.txt')
    return cfg


# The full objective of Eq. 8 for TINY_MODEL: TgD (teacher + a 12-slot queue), FgD, MLM with ET.
FULL_OBJECTIVE = dict(
    type='R2D2Objective',
    contrastive=dict(type='TargetDistillLoss', alpha=0.4),
    fgr=dict(type='FGRLoss'),
    teacher=dict(type='MomentumTeacher', momentum=0.9),
    queue=dict(type='FeatureQueue', size=12, decay=0.99),
    fgd=dict(type='FeatureGuidedDistiller'),
    mlm_head=dict(type='MLMHead'),
    enhanced_training=True,
)


@pytest.fixture
def tiny_full_cfg(tiny_model_cfg):
    """The tiny R2D2 with the full objective (every loss of Eq. 8, teacher, queue)."""
    return {**tiny_model_cfg, 'objective': copy.deepcopy(FULL_OBJECTIVE)}


@pytest.fixture
def pipeline32():
    """The evaluation pipeline at 32 px: load, bicubic resize (PIL), pack."""
    return [
        dict(type='LoadImage'),
        dict(type='Resize', scale=(32, 32), keep_ratio=False, interpolation='bicubic',
             backend='pillow'),
        dict(type='PackInputs', algorithm_keys=['text', 'image_idx', 'text_idx'],
             meta_keys=['img_path', 'image_id']),
    ]


@pytest.fixture
def free_port() -> int:
    """A free TCP port on localhost for a gloo process group."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]
