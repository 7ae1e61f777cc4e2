"""R2D2Model's loss on 2 gloo processes equals the loss on the concatenated batch in 1 process.

This pins the distributed FGR path: hard negatives are indices into the batch gathered from every
rank, the negative image tokens / text hidden states are taken from the gathered tensors, and the
gradients of negatives that live on another rank flow back to it. With the full objective it also
pins TgD over the gathered batch and a queue filled from both ranks, and the FgD centres (masking
ratios 0, so that both runs see the same inputs; the second of two steps is compared).
"""
import copy
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.dataset import default_collate
from mmengine.registry import init_default_scope

import r2d2lib.models.losses.fgr as fgr_module
from r2d2lib.registry import DATASETS, MODELS

N, SHIFT = 8, 3  # 8 pairs in all; the negative of global sample g is sample (g + 3) % 8


def fixed_negatives(similarity, query_ids, candidate_ids, temperature):
    """Deterministic stand-in for the sampler: same choice on 1 or 2 ranks (global indices)."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    n = query_ids.numel()
    global_idx = torch.arange(n) + rank * n if dist.is_initialized() else torch.arange(n)
    return (global_idx + SHIFT) % N, torch.ones(n, dtype=torch.bool)


def build(cfg):
    torch.manual_seed(0)
    cfg = copy.deepcopy(cfg)
    cfg['text_encoder']['config'].update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    cfg['text_image_encoder']['dropout'] = cfg['image_text_encoder']['dropout'] = 0.0
    return MODELS.build(cfg)


def make_inputs(model, toy_data, pipeline):
    init_default_scope('r2d2lib')
    dataset = DATASETS.build(dict(type='RetrievalDataset', data_root=str(toy_data),
                                  ann_file='train.jsonl', pipeline=pipeline))
    # one caption per image so that every pair has 7 valid negatives
    return model.data_preprocessor(default_collate([dataset[2 * i] for i in range(N)]), True)['inputs']


STATE = ('objective.queue.image_feats', 'objective.queue.text_feats', 'objective.queue.weights',
         'objective.queue.image_ids', 'objective.fgd.text_centre.centre', 'objective.fgd.image_centre.centre')


def total_and_grads(model, inputs):
    """Loss and gradients of the second of two steps (the first fills the queue), and the state."""
    for _ in range(2):
        model.zero_grad()
        losses = model.loss(inputs)
        loss = sum(v for k, v in losses.items() if k.startswith('loss_'))
        loss.backward()
    state = {k: v.clone() for k, v in model.state_dict().items() if k in STATE}
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, state


def worker(rank, world, port, cfg, toy_data, pipeline, out):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    torch.set_num_threads(1)
    fgr_module.sample_hard_negatives = fixed_negatives
    model = build(cfg)
    inputs = make_inputs(model, toy_data, pipeline)
    half = slice(rank * N // 2, (rank + 1) * N // 2)
    loss, grads, state = total_and_grads(model, {k: v[half] for k, v in inputs.items()})
    dist.all_reduce(loss)
    for g in grads.values():  # what DDP does to the gradients
        dist.all_reduce(g)
        g /= world
    if rank == 0:
        torch.save(dict(loss=loss / world, grads=grads, state=state), out)
    dist.destroy_process_group()


@pytest.mark.parametrize('objective', ['gcpr_fgr', 'full'])
def test_two_processes_equal_one_process(tiny_model_cfg, tiny_full_cfg, toy_data, pipeline32, free_port,
                                         tmp_path, monkeypatch, objective):
    if objective == 'full':  # TgD with a 12-slot queue, FgD, MLM; no masking (same inputs on 1 and 2 ranks)
        tiny_model_cfg = copy.deepcopy(tiny_full_cfg)
        tiny_model_cfg['objective'].update(text_mask_ratio=0.0, fgd=dict(type='FeatureGuidedDistiller',
                                                                          patch_drop_ratio=0.0))
    out = str(tmp_path / 'rank0.pt')
    mp.start_processes(worker, args=(2, free_port, tiny_model_cfg, toy_data, pipeline32, out),
                       nprocs=2, start_method='spawn')
    result = torch.load(out)

    monkeypatch.setattr(fgr_module, 'sample_hard_negatives', fixed_negatives)
    model = build(tiny_model_cfg)
    loss, grads, state = total_and_grads(model, make_inputs(model, toy_data, pipeline32))
    torch.testing.assert_close(result['loss'], loss, rtol=1e-5, atol=1e-6)
    assert result['state'].keys() == state.keys() and (objective == 'gcpr_fgr') == (not state)
    for name, value in state.items():  # queue filled in rank order == the concatenated batch
        torch.testing.assert_close(result['state'][name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert result['grads'].keys() == grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(result['grads'][name], grad, rtol=1e-4, atol=1e-6, msg=name)
