"""tools/dist_train.sh with 2 CPU processes (torchrun, gloo), as a user runs it.

1. The 2-process run equals single-process training on the same global batch (every parameter,
   the momentum teacher, the queue, the FgD centres), with ``--auto-scale-lr`` scaling by the
   global batch.
2. A 2-process run stopped after a checkpoint and resumed with ``--resume`` ends bit for bit where
   the uninterrupted 2-process run ends (every rank's RNG states restored).
"""
import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from r2d2lib.engine import StrictRunner, load_config
from r2d2lib.io.checkpoint import load_checkpoint_file

ROOT = Path(__file__).parents[2]
PER_RANK, ITERS, QUEUE = 4, 4, 16  # global batch 8; the queue holds 2 global batches and wraps at step 2


def write_config(path: Path, model: dict, pipeline: list, data_root: Path,
                 optimizer: dict = dict(type='AdamW', lr=1e-3, weight_decay=0.01)) -> Path:
    """A tiny iteration-based config: 4 iterations of 4 pairs per rank, a checkpoint every 2."""
    text = f"""_base_ = [{str(ROOT / 'configs/_base_/default_runtime.py')!r}]
model = {model!r}
train_dataloader = dict(batch_size={PER_RANK}, num_workers=0,
                        sampler=dict(type='DefaultSampler', shuffle=True),
                        collate_fn=dict(type='default_collate'),
                        dataset=dict(type='RetrievalDataset', data_root={str(data_root)!r},
                                     ann_file='train.jsonl', pipeline={pipeline!r}))
train_cfg = dict(type='IterBasedTrainLoop', max_iters={ITERS})
optim_wrapper = dict(optimizer={optimizer!r})
param_scheduler = [dict(type='CosineAnnealingLR', T_max={ITERS}, by_epoch=False, begin=0, end={ITERS})]
auto_scale_lr = dict(enable=False, base_batch_size=16)
default_hooks = dict(checkpoint=dict(interval=2, by_epoch=False), logger=dict(interval=1))
custom_hooks = [dict(type='RandomStateHook'), dict(type='MomentumUpdateHook')]
randomness = dict(seed=0, diff_rank_seed=True)
log_level = 'WARNING'
"""
    path.write_text(text, encoding='utf-8')
    return path


def dist_train(config: Path, work_dir: Path, port: int, *args: str) -> None:
    env = dict(os.environ, PORT=str(port), OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1',
               PATH=f'{Path(sys.executable).parent}:{os.environ.get("PATH", "/usr/bin:/bin")}')
    result = subprocess.run(['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir', str(work_dir),
                             *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]


def full_model(cfg: dict) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg['objective']['queue']['size'] = QUEUE
    return cfg


def test_two_processes_equal_one_process_on_the_global_batch(tiny_full_cfg, toy_data, pipeline32, free_port,
                                                             tmp_path):
    """Why the runs can agree, and what is made deterministic for it:

    - data: rank r gets the shuffled order's positions r, r+2, ... (mmengine's DefaultSampler, same
      seed), so the 2 ranks' batches of 4 together are the single run's batch of 8; gathered in rank
      order they are the batch permuted within itself (positions 0 2 4 6 1 3 5 7). Every loss is a
      mean over the global batch and invariant to that order; the queue rows are compared under it.
    - hard negatives: each rank draws from its own generator, so the draws of 1 and 2 processes
      cannot be the same numbers. ``hard_negative_temperature=1e-6`` makes the draw the hardest
      negative of the gathered batch (the next one's probability is below exp(-100) once the
      similarities differ by 1e-4), whatever the uniform number: the same pairs on 1 and 2 ranks,
      through the same gathered-index code. Exact ties are identical captions, whose pairs are the
      same tensors either way.
    - dropout, MLM masking and FgD patch drop are 0: they draw per rank too, and the MLM loss is a
      mean per rank over a random number of masked tokens (a mean of means on 2 ranks).
    - the initial weights: rank 1 seeds differently (diff_rank_seed) but DDP broadcasts rank 0's,
      which are the single run's (same seed on rank 0).

    Optimizer and tolerance: the runs differ only in float summation order (DDP's all-reduce of two
    half-batch gradients against one backward, the gathered columns). SGD (momentum 0.9, lr 0.1
    after scaling) carries a gradient difference into the weights in proportion; AdamW would not be
    comparable: the key biases of attention have an exact gradient of 0 (a bias added to every key
    shifts a softmax row by a constant), so their gradients are rounding noise that Adam's
    m / (sqrt(v) + eps) turns into steps of about lr, different in the two runs. Measured: weights
    move by up to 0.18 in the last 2 of the 4 steps, the two runs differ by at most 9.2e-6
    (text embeddings; 5.5e-6 after 2 steps): atol 5e-5 is 5x that and 1/3600 of the movement,
    whereas a wrong negative, a queue filled in another order or a mean of per-rank means moves
    the loss, and so the weights, by a share of their movement.
    """
    model = full_model(tiny_full_cfg)
    for key in ('hidden_dropout_prob', 'attention_probs_dropout_prob'):
        model['text_encoder']['config'][key] = 0.0
    model['text_image_encoder']['dropout'] = model['image_text_encoder']['dropout'] = 0.0
    model['objective'].update(text_mask_ratio=0.0,
                              fgd=dict(type='FeatureGuidedDistiller', patch_drop_ratio=0.0),
                              fgr=dict(type='FGRLoss', hard_negative_temperature=1e-6))
    config = write_config(tmp_path / 'tiny.py', model, pipeline32, toy_data,
                          optimizer=dict(type='SGD', lr=0.2, momentum=0.9))
    dist_train(config, tmp_path / 'two', free_port, '--auto-scale-lr')
    two = load_checkpoint_file(str(tmp_path / 'two' / f'iter_{ITERS}.pth'), allow_pickle=True)

    cfg = load_config(str(config), {'train_dataloader.batch_size': 2 * PER_RANK}, str(tmp_path / 'one'))
    cfg.auto_scale_lr.enable = True
    cfg.experiment_name = 'one-process'
    one = StrictRunner.from_cfg(cfg)
    one.train()

    # --auto-scale-lr: lr x global batch / base_batch_size = 0.2 x (2 x 4) / 16 on 2 ranks, as on 1
    for group in two['optimizer']['param_groups'] + one.optim_wrapper.state_dict()['param_groups']:
        assert group['initial_lr'] == 0.1
    a, b = two['state_dict'], one.model.state_dict()
    assert a.keys() == b.keys()
    assert {'objective.queue.image_feats', 'objective.fgd.text_centre.centre', 'temperature.temp'} <= set(a)
    assert any(k.startswith('objective.teacher.') for k in a)
    order = torch.tensor([0, 2, 4, 6, 1, 3, 5, 7])  # gathered position p holds the single batch's order[p]
    block_order = torch.cat([order + 8 * block for block in range(QUEUE // 8)])
    for key, value in b.items():
        if key.startswith('objective.queue.') and value.dim() >= 1 and value.shape[0] == QUEUE:
            value = value[block_order]
        if value.is_floating_point():
            torch.testing.assert_close(a[key], value, rtol=0, atol=5e-5, msg=key)
        else:
            assert torch.equal(a[key], value), key
    assert int(a['objective.queue.ptr']) == (ITERS * 8) % QUEUE and a['objective.queue.weights'].min() < 1
    mid = load_checkpoint_file(str(tmp_path / 'two' / 'iter_2.pth'), allow_pickle=True)['state_dict']
    moved = max((a[k] - mid[k]).abs().max().item() for k in a if a[k].is_floating_point())
    assert moved > 0.05, moved  # the last 2 steps alone move weights 1000x the tolerance


def test_two_process_resume_is_bit_exact(tiny_full_cfg, toy_data, pipeline32, free_port, tmp_path):
    """Dropout, MLM masking, FgD patch drop and the hard-negative draws all random, each rank with its
    own seed: the resumed run continues exactly only if every rank's RNG states come back."""
    model = full_model(tiny_full_cfg)
    model['text_encoder']['config']['hidden_dropout_prob'] = 0.1
    config = write_config(tmp_path / 'tiny.py', model, pipeline32, toy_data)
    dist_train(config, tmp_path / 'straight', free_port)
    dist_train(config, tmp_path / 'stopped', free_port, '--cfg-options', 'train_cfg.max_iters=2')
    assert not (tmp_path / 'stopped' / f'iter_{ITERS}.pth').exists()
    dist_train(config, tmp_path / 'stopped', free_port, '--resume')

    a, b, mid = (load_checkpoint_file(str(tmp_path / run / f'iter_{it}.pth'), allow_pickle=True)
                 for run, it in [('straight', ITERS), ('stopped', ITERS), ('stopped', 2)])
    assert a['meta']['iter'] == b['meta']['iter'] == ITERS
    assert a['state_dict'].keys() == b['state_dict'].keys()
    assert any(not torch.equal(v, mid['state_dict'][k]) for k, v in b['state_dict'].items())
    for key, value in a['state_dict'].items():
        assert torch.equal(value, b['state_dict'][key]), key
    for idx, state in a['optimizer']['state'].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b['optimizer']['state'][idx][name]))
    assert len(b['random_state']) == 2  # both ranks' generators
    assert not torch.equal(b['random_state'][0]['torch'], b['random_state'][1]['torch'])
    for rank in range(2):  # each rank's generators ended in the same state
        assert torch.equal(a['random_state'][rank]['torch'], b['random_state'][rank]['torch'])
        assert np.array_equal(a['random_state'][rank]['numpy'][1], b['random_state'][rank]['numpy'][1])
