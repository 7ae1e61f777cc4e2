"""ZeroCorpusShardDataset: brace patterns, rank x worker splitting, text draw, corrupt samples, mmengine."""
import collections

import numpy as np
import pytest
from mmengine.dataset import pseudo_collate
from mmengine.runner import Runner
from torch.utils.data import DataLoader

from r2d2lib.datasets.text_choice import choose_text
from r2d2lib.datasets.zero_shards import SHARD_STRIDE, ZeroCorpusShardDataset, expand_braces, shard_list

from . import miniature as mini
from .helpers import PIPELINE


def expected_texts(index: int):
    return [f'标题{index}', f'正文{index}：{mini.caption(index, 1)}', f'查询{index}']


def samples(ds, num_workers=0):
    loader = DataLoader(ds, batch_size=None, num_workers=num_workers, collate_fn=lambda x: x)
    return [(s['data_samples'].image_idx, s['data_samples'].text) for s in loader]


def test_expand_braces():
    assert expand_braces('s/{000..002}.tar') == ['s/000.tar', 's/001.tar', 's/002.tar']
    assert expand_braces('{a,b}/{8..10}.tar') == ['a/8.tar', 'a/9.tar', 'a/10.tar',
                                                  'b/8.tar', 'b/9.tar', 'b/10.tar']
    assert expand_braces('plain.tar') == ['plain.tar']
    assert shard_list('x/{0..1}.tar::/abs/y.tar', 'root') == ['root/x/0.tar', 'root/x/1.tar', '/abs/y.tar']
    assert shard_list(['a.tar', 'b.tar']) == ['a.tar', 'b.tar']
    with pytest.raises(ValueError, match='empty range'):
        expand_braces('{5..3}.tar')


def test_two_ranks_two_workers_cover_every_sample_once(tmp_path):
    kw = mini.write_zero_shards(tmp_path, num_shards=5, samples_per_shard=3)['train']
    seen = []
    per_rank = []
    for rank in range(2):
        ds = ZeroCorpusShardDataset(**kw, pipeline=PIPELINE, repeat=False, rank=rank, world_size=2,
                                    seed=2)
        got = samples(ds, num_workers=2)
        per_rank.append(len(got))
        seen += got
    ids = [i for i, _ in seen]
    assert sorted(ids) == [s * SHARD_STRIDE + p for s in range(5) for p in range(3)]
    assert len(set(ids)) == len(ids) == 15
    assert sorted(per_rank) == [6, 9]  # 5 shards over 4 consumers: one reads two
    for image_idx, text in seen:  # the draw of epoch 0
        shard, pos = divmod(image_idx, SHARD_STRIDE)
        texts = expected_texts(3 * shard + pos)
        assert text == texts[choose_text(2, 0, image_idx, 3)]


def test_shard_order_shuffled_per_epoch_same_on_every_rank(tmp_path):
    kw = mini.write_zero_shards(tmp_path, num_shards=8, samples_per_shard=1)['train']
    ds = ZeroCorpusShardDataset(**kw, rank=0, world_size=1, seed=0)
    orders = [[i for i, _ in ds.shards_for(epoch, 0, 1)] for epoch in range(3)]
    assert all(sorted(o) == list(range(8)) for o in orders)
    assert orders[0] != orders[1] != orders[2]
    parts = [ds.shards_for(1, c, 3) for c in range(3)]  # what 3 consumers read in epoch 1
    assert sorted(i for part in parts for i, _ in part) == list(range(8))
    assert len(ZeroCorpusShardDataset(**kw, rank=1, world_size=3, num_samples=8)) == 3
    unshuffled = ZeroCorpusShardDataset(**kw, shuffle_shards=False, rank=0, world_size=1)
    assert [i for i, _ in unshuffled.shards_for(5, 1, 2)] == [1, 3, 5, 7]


def test_repeat_draws_a_new_text_each_pass(tmp_path):
    kw = mini.write_zero_shards(tmp_path, num_shards=2, samples_per_shard=4)['train']
    ds = ZeroCorpusShardDataset(**kw, pipeline=PIPELINE, seed=9, rank=0, world_size=1,
                                shuffle_shards=False)
    ds.set_epoch(3)
    it = iter(ds)
    first = [next(it)['data_samples'] for _ in range(16)]
    ids = [s.image_idx for s in first]
    assert ids[:8] == ids[8:] == [s * SHARD_STRIDE + p for s in range(2) for p in range(4)]
    for n, sample in enumerate(first):
        epoch = 3 + n // 8
        shard, pos = divmod(sample.image_idx, SHARD_STRIDE)
        assert sample.text == expected_texts(4 * shard + pos)[choose_text(9, epoch, sample.image_idx, 3)]
    counts = collections.Counter(s.text.startswith('标题') for s in first)
    assert counts[True] and counts[False]


def test_corrupt_samples_skipped_counted_logged(tmp_path, logs):
    kw = mini.write_zero_shards(tmp_path, num_shards=2, samples_per_shard=3, corrupt=True)['train']
    ds = ZeroCorpusShardDataset(**kw, pipeline=PIPELINE, repeat=False, rank=0, world_size=1,
                                shuffle_shards=False)
    got = samples(ds)
    assert [i for i, _ in got] == [0, 1, 2, SHARD_STRIDE, SHARD_STRIDE + 1, SHARD_STRIDE + 2]
    assert (ds.num_unreadable_images, ds.num_corrupt_samples, ds.num_empty_captions) == (1, 2, 0)
    text = '\n'.join(logs)
    shard0 = str(tmp_path / 'shards' / '00000.tar')
    for key, why in (('000000003', 'OSError'), ('000000004.json', 'invalid JSON'),
                     ('000000005', 'no image member')):
        assert any(f'{shard0}:{key}' in m and why in m for m in logs), (key, text)


@pytest.mark.parametrize('cut', [4000, 4196])  # in the header / the data of sample 1's image
def test_truncated_tar_keeps_complete_samples(tmp_path, logs, cut):
    kw = mini.write_zero_shards(tmp_path, num_shards=1, samples_per_shard=3)['train']
    shard = tmp_path / 'shards' / '00000.tar'
    data = shard.read_bytes()
    shard.write_bytes(data[:cut])
    ds = ZeroCorpusShardDataset(**kw, pipeline=PIPELINE, repeat=False, rank=0, world_size=1)
    got = samples(ds)
    assert got == [(0, expected_texts(0)[choose_text(0, 0, 0, 3)])] and ds.num_corrupt_samples == 1
    assert any('unreadable tar' in m and str(shard) in m for m in logs)


def test_idle_and_unusable_consumers_end(tmp_path, logs):
    kw = mini.write_zero_shards(tmp_path, num_shards=2, samples_per_shard=2)['train']
    # 2 shards, 3 consumers: the third ends at once even with repeat=True.
    assert list(ZeroCorpusShardDataset(**kw, rank=2, world_size=3)) == []
    assert not any('2 shard(s) for 3 consumers' in m for m in logs)  # consumer 0 warns, not 2
    list(zip(range(1), ZeroCorpusShardDataset(**kw, rank=0, world_size=3)))
    assert any('2 shard(s) for 3 consumers' in m for m in logs)
    (tmp_path / 'shards' / '00001.tar').write_bytes(b'')
    only_bad = ZeroCorpusShardDataset(**kw, rank=1, world_size=2, shuffle_shards=False)
    assert list(only_bad) == [] and any('read no usable sample' in m for m in logs)


def test_json_without_texts_uses_txt_caption(tmp_path):
    import io
    import json
    import tarfile
    path = tmp_path / 'one.tar'
    with tarfile.open(path, 'w') as tar:
        for name, data in (('k.jpg', mini.jpeg_bytes(1)), ('k.txt', '仅有标题'.encode()),
                           ('k.json', json.dumps({'url': 'u'}).encode()),
                           ('e.jpg', mini.jpeg_bytes(2)), ('e.json', b'{}')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    ds = ZeroCorpusShardDataset(str(path), pipeline=PIPELINE, repeat=False, rank=0, world_size=1)
    assert samples(ds) == [(0, '仅有标题')]
    assert ds.num_empty_captions == 1


def test_runner_build_dataloader_two_workers(tmp_path):
    kw = mini.write_zero_shards(tmp_path, num_shards=4, samples_per_shard=3)['train']
    pipeline = [dict(type='LoadImage'),
                dict(type='Resize', scale=(16, 16), keep_ratio=False, backend='pillow'),
                dict(type='PackInputs', algorithm_keys=['text', 'image_idx', 'text_idx'])]
    loader = Runner.build_dataloader(
        dict(batch_size=2, num_workers=2, sampler=None, persistent_workers=True,
             dataset=dict(type='ZeroCorpusShardDataset', pipeline=pipeline, **kw),
             collate_fn=dict(type='pseudo_collate')), seed=0)
    it = iter(loader)
    batches = [next(it) for _ in range(2)]
    for batch in batches:
        assert [tuple(x.shape) for x in batch['inputs']] == [(3, 16, 16)] * 2
        assert all(s.text and s.image_idx == s.text_idx for s in batch['data_samples'])
    ids = [s.image_idx for b in batches for s in b['data_samples']]
    assert len(set(ids)) == 4
    assert loader.dataset.metainfo['num_shards'] == 4
    assert len(loader.dataset) == 40_000 and len(loader) == 20_000  # nominal: 4 shards x 10,000
    it._shutdown_workers()


def test_pipeline_output_is_collatable(tmp_path):
    kw = mini.write_zero_shards(tmp_path, num_shards=1, samples_per_shard=2)['train']
    ds = ZeroCorpusShardDataset(**kw, pipeline=PIPELINE, repeat=False, rank=0, world_size=1)
    batch = pseudo_collate(list(ds))
    assert len(batch['inputs']) == 2 and np.asarray(batch['inputs'][0]).shape == (3, 32, 32)


def test_trains_with_iter_based_loop(tmp_path, tiny_model_cfg):
    """Two training iterations of the tiny R2D2 through mmengine's Runner, streamed from shards."""
    import math

    from mmengine.hooks import Hook
    from mmengine.runner import IterBasedTrainLoop

    kw = mini.write_zero_shards(tmp_path / 'data', num_shards=4, samples_per_shard=4)['train']
    pipeline = [dict(type='LoadImage'),
                dict(type='Resize', scale=(32, 32), keep_ratio=False, interpolation='bicubic',
                     backend='pillow'),
                dict(type='PackInputs', algorithm_keys=['text', 'image_idx', 'text_idx'])]
    losses = []

    class RecordLoss(Hook):
        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            losses.append(float(outputs['loss'].detach()))
            assert len(set(s.image_idx for s in data_batch['data_samples'])) == 4

    runner = Runner(
        model=tiny_model_cfg, work_dir=str(tmp_path / 'work'), default_scope='r2d2lib',
        train_dataloader=dict(batch_size=4, num_workers=2, persistent_workers=True, sampler=None,
                              dataset=dict(type='ZeroCorpusShardDataset', pipeline=pipeline, **kw),
                              collate_fn=dict(type='pseudo_collate')),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=2),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-4)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=10**6, save_last=False),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[RecordLoss()], randomness=dict(seed=0), log_level='WARNING')
    runner.train()
    assert isinstance(runner.train_loop, IterBasedTrainLoop) and runner.iter == 2
    # Stop the persistent workers now: left to the garbage collector, their shutdown takes ~10 s.
    runner.train_loop.dataloader_iterator._iterator._shutdown_workers()
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
