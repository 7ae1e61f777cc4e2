"""Mixed precision: MixedPrecisionOptimWrapper on the CPU, fp32 logits under autocast, a bf16 step."""
import copy

import pytest
import torch
from mmengine.dataset import default_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from r2d2lib.engine import MixedPrecisionOptimWrapper
from r2d2lib.models.losses import GCPRLoss
from r2d2lib.models.utils import sample_hard_negatives, similarity_fp32
from r2d2lib.registry import DATASETS, MODELS

init_default_scope('r2d2lib')


def wrapper(model, **cfg):
    return build_optim_wrapper(model, dict(type='MixedPrecisionOptimWrapper',
                                           optimizer=dict(type='AdamW', lr=1e-3), **cfg))


def test_the_one_line_switch_builds_on_the_cpu():
    """mmengine's own AmpOptimWrapper asserts a GPU; ours builds, bf16 without a loss scaler."""
    model = torch.nn.Linear(4, 2)
    bf16 = wrapper(model, dtype='bfloat16')
    assert isinstance(bf16, MixedPrecisionOptimWrapper) and bf16.cast_dtype == torch.bfloat16
    assert bf16.device_type == 'cpu' and not bf16.loss_scaler.is_enabled()
    fp16 = wrapper(model, dtype='float16')
    assert fp16.loss_scaler.is_enabled() and fp16.loss_scaler.get_scale() == 2.0 ** 16
    assert wrapper(model, dtype='float16', loss_scale=512.0).loss_scaler.get_scale() == 512.0
    with pytest.raises(ValueError, match='optim_wrapper.dtype'):
        wrapper(model, dtype='int8')


def test_optim_context_autocasts_and_the_update_stays_fp32():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    before = model.weight.detach().clone()
    optim = wrapper(model, dtype='bfloat16')
    with optim.optim_context(model):
        out = model(torch.randn(3, 4))
    assert out.dtype == torch.bfloat16
    optim.update_params(out.float().square().mean())
    assert model.weight.dtype == torch.float32 and not torch.equal(model.weight, before)


def test_fp16_loss_scaling_skips_a_step_with_inf_gradients_and_lowers_the_scale():
    model = torch.nn.Linear(2, 1)
    optim = wrapper(model, dtype='float16')
    before = model.weight.detach().clone()
    optim.update_params((model(torch.tensor([[float('inf'), 1.0]])).float()).sum())
    assert torch.equal(model.weight, before)  # skipped
    assert optim.loss_scaler.get_scale() == 2.0 ** 15
    state = optim.state_dict()
    assert state['loss_scaler']['scale'] == 2.0 ** 15


def test_similarity_logits_stay_fp32_under_autocast():
    """sim / tau at tau = 0.01: a bf16 matmul is off by ~0.1-1 per logit, the fp32 one exactly right."""
    torch.manual_seed(0)
    a, b = (torch.nn.functional.normalize(torch.randn(16, 64), dim=-1) for _ in range(2))
    exact = a @ b.t() / 0.01
    with torch.autocast('cpu', dtype=torch.bfloat16):
        naive = a @ b.t() / 0.01
        safe = similarity_fp32(a, b, 0.01)
    assert naive.dtype == torch.bfloat16 and (naive.float() - exact).abs().max() > 0.05
    assert safe.dtype == torch.float32 and torch.equal(safe, exact)


def test_gcpr_loss_and_hard_negatives_equal_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    images, texts = (torch.nn.functional.normalize(torch.randn(8, 32), dim=-1) for _ in range(2))
    ids = torch.arange(8)
    loss, tau = GCPRLoss(), torch.tensor(0.01)
    exact = loss(images, texts, ids, tau)
    torch.manual_seed(1)
    negatives = sample_hard_negatives(texts @ images.t(), ids, ids, 0.01)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert torch.equal(loss(images, texts, ids, tau), exact)
        torch.manual_seed(1)
        negatives_amp = sample_hard_negatives(similarity_fp32(texts, images), ids, ids, 0.01)
    assert all(torch.equal(x, y) for x, y in zip(negatives, negatives_amp))


def test_bf16_training_step_of_the_full_objective_is_close_to_fp32(tiny_full_cfg, toy_data, pipeline32):
    """Tolerance: 5e-2 absolute per loss at init (bf16 keeps ~3 significant digits in the towers)."""
    dataset = DATASETS.build(dict(type='RetrievalDataset', data_root=str(toy_data), ann_file='train.jsonl',
                                  pipeline=pipeline32))
    data = default_collate([dataset[i] for i in range(8)])
    results = {}
    for dtype in (None, 'bfloat16'):
        torch.manual_seed(0)
        model = MODELS.build(copy.deepcopy(tiny_full_cfg))
        model.init_weights()
        optim = (build_optim_wrapper(model, dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3)))
                 if dtype is None else wrapper(model, dtype=dtype))
        torch.manual_seed(1)
        logs = model.train_step(data, optim)
        updated_finite = all(torch.isfinite(p).all() for p in model.parameters())
        results[dtype] = ({k: float(v.detach()) for k, v in logs.items()}, updated_finite)
    fp32, bf16 = results[None][0], results['bfloat16'][0]
    assert results['bfloat16'][1]
    assert fp32.keys() == bf16.keys() and {'loss_gcpr', 'loss_fgr', 'loss_fgd', 'loss_mlm'} <= set(fp32)
    for key in fp32:
        assert abs(bf16[key] - fp32[key]) < 5e-2, (key, fp32[key], bf16[key])
