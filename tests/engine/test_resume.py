"""Train, save, resume on torch >= 2.6 and continue == train without stopping; bad images skipped."""
import copy
import json
import shutil

import torch
from mmengine.runner import Runner

import r2d2lib  # noqa: F401  (installs the checkpoint loader)

PIPELINE = [
    dict(type='LoadImage'),
    dict(type='Resize', scale=(32, 32), keep_ratio=False, interpolation='bicubic', backend='pillow'),
    dict(type='PackInputs', algorithm_keys=['text', 'image_idx', 'text_idx'],
         meta_keys=['img_path', 'image_id']),
]


def runner_cfg(model_cfg, data_root, work_dir, max_iters, ann_file='train.jsonl', resume=None):
    model = copy.deepcopy(model_cfg)
    model['text_encoder']['config']['hidden_dropout_prob'] = 0.1  # dropout: RNG must resume too
    return dict(
        model=model,
        work_dir=str(work_dir),
        default_scope='r2d2lib',
        train_dataloader=dict(
            batch_size=4, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
            dataset=dict(type='RetrievalDataset', data_root=str(data_root), ann_file=ann_file,
                         pipeline=PIPELINE)),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01)),
        param_scheduler=[dict(type='CosineAnnealingLR', T_max=6, by_epoch=False, begin=0, end=6)],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=3, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='RandomStateHook')],
        randomness=dict(seed=0),
        load_from=resume, resume=resume is not None,
        log_level='WARNING',
    )


def test_resume_continues_exactly_like_an_uninterrupted_run(tiny_model_cfg, toy_data, tmp_path):
    straight = Runner.from_cfg(runner_cfg(tiny_model_cfg, toy_data, tmp_path / 'a', max_iters=6))
    straight.train()

    first = Runner.from_cfg(runner_cfg(tiny_model_cfg, toy_data, tmp_path / 'b', max_iters=3))
    first.train()
    ckpt = tmp_path / 'b' / 'iter_3.pth'
    assert ckpt.exists()
    torch.manual_seed(123)  # a fresh process would start from another RNG state
    resumed = Runner.from_cfg(runner_cfg(tiny_model_cfg, toy_data, tmp_path / 'c', max_iters=6,
                                         resume=str(ckpt)))
    resumed.train()

    assert resumed.iter == straight.iter == 6
    a, c = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == c.keys()
    changed = [k for k in a if not torch.equal(a[k], first.model.state_dict()[k])]
    assert changed, 'training after the checkpoint changed nothing'
    for key in a:
        assert torch.equal(a[key], c[key]), key
    opt_a = straight.optim_wrapper.state_dict()['state']
    opt_c = resumed.optim_wrapper.state_dict()['state']
    for idx in opt_a:
        assert torch.equal(opt_a[idx]['exp_avg'], opt_c[idx]['exp_avg'])


def test_training_skips_missing_and_corrupt_images(tiny_model_cfg, toy_data, tmp_path):
    root = tmp_path / 'data'
    shutil.copytree(toy_data, root)
    (root / 'images' / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    lines = (root / 'train.jsonl').read_text(encoding='utf-8').splitlines()
    lines += [json.dumps({'image_path': 'images/broken.jpg', 'text': '红色的圆形'}, ensure_ascii=False),
              json.dumps({'image_path': 'images/missing.png', 'text': '蓝色的圆形'}, ensure_ascii=False)]
    (root / 'bad.jsonl').write_text('\n'.join(lines) + '\n', encoding='utf-8')

    cfg = runner_cfg(tiny_model_cfg, root, tmp_path / 'w', max_iters=12, ann_file='bad.jsonl')
    cfg['train_dataloader']['batch_size'] = 8
    runner = Runner.from_cfg(cfg)
    runner.train()
    dataset = runner.train_dataloader.dataset
    assert runner.iter == 12
    assert dataset.num_missing_images == 1
    assert dataset.num_unreadable_images == 1  # 12 x 8 draws over 65 pairs: the broken one came up
    log = next((tmp_path / 'w').rglob('*.log')).read_text()
    assert 'missing.png' in log and 'broken.jpg' in log
