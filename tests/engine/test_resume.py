"""Train, save, resume on torch >= 2.6 and continue == train without stopping; bad images skipped."""
import copy
import json
import shutil

import pytest
import torch

from r2d2lib.engine import StrictRunner


def runner_cfg(model_cfg, pipeline, data_root, work_dir, max_iters, ann_file='train.jsonl',
               resume=None, by_epoch=False):
    model = copy.deepcopy(model_cfg)
    model['text_encoder']['config']['hidden_dropout_prob'] = 0.1  # dropout: RNG must resume too
    return dict(
        model=model,
        work_dir=str(work_dir),
        # a unique name: runners built within one second would otherwise share one logger
        experiment_name=f'{work_dir.parent.name}-{work_dir.name}',
        default_scope='r2d2lib',
        train_dataloader=dict(
            batch_size=4, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
            dataset=dict(type='RetrievalDataset', data_root=str(data_root), ann_file=ann_file,
                         pipeline=pipeline)),
        train_cfg=(dict(type='EpochBasedTrainLoop', max_epochs=max_iters) if by_epoch
                   else dict(type='IterBasedTrainLoop', max_iters=max_iters)),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01)),
        param_scheduler=[dict(type='CosineAnnealingLR', T_max=6, by_epoch=False, begin=0, end=6)],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1 if by_epoch else 3,
                                           by_epoch=by_epoch),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='RandomStateHook'), dict(type='MomentumUpdateHook')],
        randomness=dict(seed=0),
        load_from=resume, resume=resume is not None,
        log_level='WARNING',
    )


@pytest.mark.parametrize('objective,by_epoch', [('gcpr_fgr', False), ('gcpr_fgr', True), ('full', False)],
                         ids=['iter_based', 'epoch_based', 'full_objective'])
def test_resume_continues_exactly_like_an_uninterrupted_run(tiny_model_cfg, tiny_full_cfg, toy_data,
                                                            tmp_path, pipeline32, objective, by_epoch):
    """The full objective adds teacher, queue (12 slots: wraps after 3 steps of 4), FgD centres, MLM."""
    if objective == 'full':
        tiny_model_cfg = tiny_full_cfg
    # iteration-based: 6 iterations, stop at 3 (mid-epoch); epoch-based: 2 epochs of 16, stop at 1
    total, stop = (2, 1) if by_epoch else (6, 3)
    straight = StrictRunner.from_cfg(
        runner_cfg(tiny_model_cfg, pipeline32, toy_data, tmp_path / 'a', total, by_epoch=by_epoch))
    straight.train()

    first = StrictRunner.from_cfg(
        runner_cfg(tiny_model_cfg, pipeline32, toy_data, tmp_path / 'b', stop, by_epoch=by_epoch))
    first.train()
    ckpt = tmp_path / 'b' / (f'epoch_{stop}.pth' if by_epoch else f'iter_{stop}.pth')
    assert ckpt.exists()
    torch.manual_seed(123)  # a fresh process would start from another RNG state
    resumed = StrictRunner.from_cfg(runner_cfg(tiny_model_cfg, pipeline32, toy_data, tmp_path / 'c', total,
                                               resume=str(ckpt), by_epoch=by_epoch))
    resumed.train()

    assert resumed.iter == straight.iter == (32 if by_epoch else 6)
    a, c = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == c.keys()
    changed = [k for k in a if not torch.equal(a[k], first.model.state_dict()[k])]
    assert changed, 'training after the checkpoint changed nothing'
    for key in a:
        assert torch.equal(a[key], c[key]), key
    if objective == 'full':  # the distillation state is in the compared state dict, and it moved
        assert {'objective.queue.weights', 'objective.queue.ptr', 'objective.fgd.text_centre.centre',
                'temperature.temp'} <= set(a)
        assert any(k.startswith('objective.teacher.teachers.text_encoder.') for k in a)
        assert int(a['objective.queue.ptr']) == (6 * 4) % 12 and a['objective.queue.weights'].min() < 1
        assert a['objective.fgd.image_centre.centre'].abs().sum() > 0
    opt_a = straight.optim_wrapper.state_dict()['state']
    opt_c = resumed.optim_wrapper.state_dict()['state']
    for idx in opt_a:
        assert torch.equal(opt_a[idx]['exp_avg'], opt_c[idx]['exp_avg'])


def test_training_skips_missing_and_corrupt_images(tiny_model_cfg, toy_data, tmp_path, pipeline32):
    root = tmp_path / 'data'
    shutil.copytree(toy_data, root)
    (root / 'images' / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    lines = (root / 'train.jsonl').read_text(encoding='utf-8').splitlines()
    lines += [json.dumps({'image_path': 'images/broken.jpg', 'text': '红色的圆形'}, ensure_ascii=False),
              json.dumps({'image_path': 'images/missing.png', 'text': '蓝色的圆形'}, ensure_ascii=False)]
    (root / 'bad.jsonl').write_text('\n'.join(lines) + '\n', encoding='utf-8')

    cfg = runner_cfg(tiny_model_cfg, pipeline32, root, tmp_path / 'w', max_iters=12, ann_file='bad.jsonl')
    cfg['train_dataloader']['batch_size'] = 8
    runner = StrictRunner.from_cfg(cfg)
    runner.train()
    dataset = runner.train_dataloader.dataset
    assert runner.iter == 12
    assert dataset.num_missing_images == 1
    assert dataset.num_unreadable_images == 1  # 12 x 8 draws over 65 pairs: the broken one came up
    log = next((tmp_path / 'w').rglob('*.log')).read_text()
    assert 'missing.png' in log and 'broken.jpg' in log


def test_loading_a_checkpoint_with_missing_weights_fails_naming_them(tiny_model_cfg, toy_data,
                                                                    tmp_path, pipeline32):
    runner = StrictRunner.from_cfg(runner_cfg(tiny_model_cfg, pipeline32, toy_data, tmp_path / 'a', 1))
    state = {k: v for k, v in runner.model.state_dict().items() if not k.startswith('vision_proj')}
    torch.save(dict(state_dict=state), tmp_path / 'partial.pth')
    with pytest.raises(RuntimeError, match='vision_proj.weight'):
        runner.load_checkpoint(str(tmp_path / 'partial.pth'))
