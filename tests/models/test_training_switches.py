"""Gradient checkpointing, torch.compile and the sync-free step give the plain path's losses and gradients."""
import copy
from types import SimpleNamespace

import pytest
import torch
from mmengine.dataset import default_collate
from mmengine.registry import init_default_scope

from r2d2lib.engine import StrictRunner
from r2d2lib.models.encoders import TimmViTEncoder
from r2d2lib.models.losses import TargetDistillLoss
from r2d2lib.models.queues import FeatureQueue
from r2d2lib.registry import DATASETS, MODELS

init_default_scope('r2d2lib')
ENCODER_KEYS = ('image_encoder', 'text_encoder', 'text_image_encoder', 'image_text_encoder')


@pytest.fixture
def batch(toy_data, pipeline32):
    dataset = DATASETS.build(dict(type='RetrievalDataset', data_root=str(toy_data), ann_file='train.jsonl',
                                  pipeline=pipeline32))
    return default_collate([dataset[i] for i in range(8)])


def build(cfg):
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model.train()


def step(model, batch, seed):
    """Losses and gradients of one training step (forward in mode 'loss', backward); then the EMA."""
    torch.manual_seed(seed)
    inputs = model.data_preprocessor(batch, True)['inputs']
    losses = model(inputs, mode='loss')
    sum(v for k, v in losses.items() if k.startswith('loss_')).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    model.objective.momentum_update(model)
    return {k: v.detach() for k, v in losses.items()}, grads


def assert_same_steps(plain, other, batch, steps=2, atol=1e-5):
    for seed in range(steps):
        (losses_a, grads_a), (losses_b, grads_b) = step(plain, batch, seed), step(other, batch, seed)
        assert losses_a.keys() == losses_b.keys()
        for key in losses_a:
            torch.testing.assert_close(losses_b[key], losses_a[key], atol=atol, rtol=0, msg=key)
        assert grads_a.keys() == grads_b.keys()
        for name in grads_a:
            torch.testing.assert_close(grads_b[name], grads_a[name], atol=atol, rtol=1e-4, msg=name)


def test_gradient_checkpointing_of_every_encoder_gives_the_same_losses_and_gradients(tiny_full_cfg, batch):
    """Dropout is on (0.1 in BERT and the cross encoders): the recomputation replays the same masks."""
    cfg = copy.deepcopy(tiny_full_cfg)
    for key in ENCODER_KEYS:
        cfg[key]['gradient_checkpointing'] = True
    plain, checkpointed = build(tiny_full_cfg), build(cfg)
    assert checkpointed.text_encoder.model.is_gradient_checkpointing
    assert checkpointed.image_encoder.model.is_gradient_checkpointing
    assert checkpointed.text_image_encoder.gradient_checkpointing
    assert_same_steps(plain, checkpointed, batch)


def test_timm_vit_gradient_checkpointing_with_dropped_patches():
    kwargs = dict(model_name='vit_tiny_patch16_224', img_size=32, patch_size=8, embed_dim=32, depth=2,
                  num_heads=2)
    torch.manual_seed(0)
    plain = TimmViTEncoder(**kwargs)
    checkpointed = TimmViTEncoder(gradient_checkpointing=True, **kwargs)
    checkpointed.load_state_dict(plain.state_dict())
    images, keep = torch.randn(2, 3, 32, 32), torch.tensor([[0, 2, 3], [1, 2, 15]])
    for encoder in (plain, checkpointed):
        encoder(images, patch_keep=keep).square().sum().backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(b.grad, a.grad, msg=name)


def test_compiled_training_step_has_no_graph_break_and_gives_the_same_losses(tiny_full_cfg, batch):
    """fullgraph=True fails on any graph break: a .item(), a data-dependent shape (boolean indexing of
    the queue or of the masked tokens), a Python branch on a tensor value. The 'eager' backend keeps
    the test fast; the graph is the one inductor compiles."""
    cfg = copy.deepcopy(tiny_full_cfg)
    for key in ('text_image_encoder', 'image_text_encoder'):
        cfg[key]['dropout'] = 0.0  # dynamo-traced dropout draws in another order
    cfg['text_encoder']['config'].update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    plain, compiled = build(cfg), build(cfg)
    compiled.compile_training(backend='eager', fullgraph=True)
    assert_same_steps(plain, compiled, batch, steps=2, atol=1e-6)  # the 2nd step reads a filled queue


def test_runner_compile_option_compiles_the_training_step_only():
    model = SimpleNamespace(calls=[], compile_training=lambda **kw: model.calls.append(kw))
    runner = SimpleNamespace(cfg=dict(compile=dict(backend='eager')), model=model,
                             logger=SimpleNamespace(info=lambda msg: None))
    StrictRunner._maybe_compile(runner, 'train_step')
    assert model.calls == [dict(backend='eager')]
    runner.cfg = dict(compile=True)
    StrictRunner._maybe_compile(runner, 'train_step')
    assert model.calls[-1] == {}
    runner.cfg = dict(compile='yes')
    with pytest.raises(TypeError, match='`compile`'):
        StrictRunner._maybe_compile(runner, 'train_step')


def test_frozen_vit_runs_once_under_inference_mode_and_serves_every_consumer(tiny_full_cfg, batch):
    cfg = copy.deepcopy(tiny_full_cfg)
    cfg['image_encoder']['frozen'] = True
    model = build(cfg)
    calls = []
    tower = model.image_encoder.model
    tower.register_forward_hook(lambda module, args, out: calls.append(torch.is_inference_mode_enabled()))
    losses, grads = step(model, batch, 0)
    assert calls == [True]  # full images once; the FgD student's dropped-patch pass goes through encoder
    assert not any(name.startswith('image_encoder.') for name in grads)
    assert 'text_image_encoder.layer.0.crossattention.self.key.weight' in grads  # its tokens fed them


def test_target_distill_over_queue_slots_equals_over_the_filled_copies():
    torch.manual_seed(0)
    queue = FeatureQueue(dim=8, size=10)
    queue.enqueue(torch.nn.functional.normalize(torch.randn(3, 8), dim=-1),
                  torch.nn.functional.normalize(torch.randn(3, 8), dim=-1), torch.tensor([7, 8, 9]))
    image, text, teacher_image, teacher_text = (
        torch.nn.functional.normalize(torch.randn(4, 8), dim=-1).requires_grad_(i < 2) for i in range(4))
    ids = torch.tensor([0, 1, 2, 7])  # id 7 also sits in the queue: a queued positive
    loss = TargetDistillLoss(alpha=0.4)
    values, grads = [], []
    for state in (queue.state(), queue.slots()):
        value = loss(image, text, ids, torch.tensor(0.07), teacher_image, teacher_text, state)
        values.append(value.detach())
        grads.append(torch.autograd.grad(value, (image, text)))
    assert queue.slots()['valid'].sum() == 3
    torch.testing.assert_close(values[1], values[0], rtol=0, atol=1e-6)
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_inductor_compiled_step_equals_eager_with_the_same_random_draws(tiny_full_cfg, batch):
    """The real compiler (inductor, C++ on CPU, ~1 min). Inductor draws its own random numbers (masks,
    dropped patches, hard negatives), so ``fallback_random`` makes it use eager's to compare."""
    import torch._inductor.config as inductor_config
    cfg = copy.deepcopy(tiny_full_cfg)
    for key in ('text_image_encoder', 'image_text_encoder'):
        cfg[key]['dropout'] = 0.0
    cfg['text_encoder']['config'].update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    plain, compiled = build(cfg), build(cfg)
    compiled.compile_training(backend='inductor', fullgraph=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inductor_config, 'fallback_random', True)
        assert_same_steps(plain, compiled, batch, steps=2, atol=1e-4)
