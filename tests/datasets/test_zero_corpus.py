"""ZeroCorpusDataset: table formats, dropped rows, the per-epoch text draw and its determinism."""
import collections

import numpy as np
import pytest
from mmengine.dataset import pseudo_collate
from mmengine.runner import Runner
from torch.utils.data import DataLoader

from r2d2lib.datasets.samplers import DatasetEpochSampler
from r2d2lib.datasets.text_choice import choose_text, splitmix64

from . import miniature as mini
from .helpers import build, check_contract, column


def reference_choice(seed: int, epoch: int, index: int, n: int) -> int:
    """SplitMix64 written with numpy uint64 wrap-around arithmetic (independent of the library)."""
    def mix(x):
        with np.errstate(over='ignore'):
            x = np.uint64(x) + np.uint64(0x9E3779B97F4A7C15)
            x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            return x ^ (x >> np.uint64(31))
    h = mix(mix(mix(seed) ^ np.uint64(epoch)) ^ np.uint64(index))
    return int(h % np.uint64(n))


def test_splitmix64_known_value_and_reference():
    # First output of SplitMix64 seeded with 0 (Vigna's reference implementation).
    assert splitmix64(0) == 0xE220A8397B1DCDAF
    for seed, epoch, index, n in [(0, 0, 0, 3), (7, 3, 12345, 3), (2**40, 29, 23_000_000, 2), (1, 1, 1, 1)]:
        assert choose_text(seed, epoch, index, n) == reference_choice(seed, epoch, index, n)
    with pytest.raises(ValueError):
        choose_text(0, 0, 0, 0)


@pytest.mark.parametrize('fmt', ['jsonl', 'csv', 'parquet'])
def test_formats_and_dropped_rows(tmp_path, fmt, logs):
    kw = mini.write_zero_corpus(tmp_path, fmt=fmt, corrupt=True)['train']
    ds = build('ZeroCorpusDataset', kw)
    check_contract(ds)
    assert (len(ds), ds.num_images, ds.num_texts) == (7, 7, 7)
    assert (ds.num_empty_captions, ds.num_missing_images) == (1, 1)
    assert column(ds, 'text_idx') == list(range(7))
    info = ds.get_data_info(0)
    assert info['texts'] == ['标题0：' + mini.caption(0, 0),
                             '正文0：' + mini.caption(0, 1) + '，图片周围的详细描述', '查询0']
    assert info['text_sources'] == ['title', 'content', 'query']
    assert str(info['show']) == '1000' and str(info['click']) == '10'
    assert info['url'] == 'https://example.com/0.jpg'
    one = ds.get_data_info(1)  # empty title: never a candidate, record kept
    assert one['text_sources'] == ['content', 'query'] and one['text'] in one['texts']
    assert str(tmp_path / 'images' / 'missing.jpg') in '\n'.join(logs)


def test_text_fields_option(tmp_path):
    kw = mini.write_zero_corpus(tmp_path)['train']
    ds = build('ZeroCorpusDataset', kw, text_fields=('title',))
    assert len(ds) == 5 and ds.num_empty_captions == 1  # record 1 has no title
    assert all(info['text_source'] == 'title' for info in map(ds.get_data_info, range(len(ds))))
    with pytest.raises(ValueError, match='text_fields'):
        build('ZeroCorpusDataset', kw, text_fields=('caption',))


def test_chosen_text_distribution_over_epochs(tmp_path):
    ds = build('ZeroCorpusDataset', mini.write_zero_corpus(tmp_path)['train'], seed=3)
    epochs = 3000
    counts = {0: collections.Counter(), 1: collections.Counter()}
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        for idx in (0, 1):
            info = ds.get_data_info(idx)
            assert info['text'] == info['texts'][choose_text(3, epoch, idx, len(info['texts']))]
            counts[idx][info['text_source']] += 1
    # Uniform over the non-empty texts: binomial sd is ~26 (1/3) and ~27 (1/2) draws.
    assert set(counts[0]) == {'title', 'content', 'query'}
    assert all(abs(c - epochs / 3) < 120 for c in counts[0].values()), counts[0]
    assert set(counts[1]) == {'content', 'query'}  # the empty title is never drawn
    assert all(abs(c - epochs / 2) < 120 for c in counts[1].values()), counts[1]
    # Within one epoch, records draw independently (not all the same field).
    ds.set_epoch(0)
    assert len({ds.get_data_info(i)['text_source'] for i in range(len(ds))}) > 1


def test_draw_deterministic_given_seed(tmp_path):
    kw = mini.write_zero_corpus(tmp_path, num_images=12)['train']

    def draws(seed):
        ds = build('ZeroCorpusDataset', kw, seed=seed)
        out = []
        for epoch in range(4):
            ds.set_epoch(epoch)
            out.append(column(ds, 'text'))
        return out

    first, again, other = draws(5), draws(5), draws(6)
    assert first == again
    assert first != other
    assert first[0] != first[1]  # a new draw every epoch


def test_epoch_reaches_persistent_workers(tmp_path):
    ds = build('ZeroCorpusDataset', mini.write_zero_corpus(tmp_path)['train'], seed=1)
    sampler = DatasetEpochSampler(ds, shuffle=False)
    loader = DataLoader(ds, batch_size=len(ds), sampler=sampler, num_workers=1,
                        persistent_workers=True, collate_fn=pseudo_collate)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        assert ds.epoch == epoch
        (batch,) = list(loader)
        texts = [s.text for s in batch['data_samples']]
        expected = []
        for i in range(len(ds)):
            cands = ds.get_data_info(i)['texts']
            expected.append(cands[choose_text(1, epoch, i, len(cands))])
        assert texts == expected


def test_epoch_sampler_from_config(tmp_path):
    ds = build('ZeroCorpusDataset', mini.write_zero_corpus(tmp_path)['train'])
    loader = Runner.build_dataloader(dict(dataset=ds, batch_size=2, num_workers=0,
                                          sampler=dict(type='DatasetEpochSampler', shuffle=True)))
    assert isinstance(loader.sampler, DatasetEpochSampler)
    loader.sampler.set_epoch(4)
    assert loader.dataset.epoch == 4 and loader.dataset._epoch._value.is_shared()


@pytest.mark.parametrize('fmt,why', [('jsonl', 'invalid JSON'), ('csv', 'expected 7 fields')])
def test_malformed_line(tmp_path, fmt, why):
    kw = mini.write_zero_corpus(tmp_path, fmt=fmt, malformed=True)['train']
    ann = tmp_path / kw['ann_file']
    with pytest.raises(ValueError, match=rf'{ann}, line {mini.find_line(ann)}: {why}'):
        build('ZeroCorpusDataset', kw)


def test_bad_rows_name_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    kw = mini.write_zero_corpus(tmp_path)['train']
    rows = mini.zero_rows(3, corrupt=False)
    rows[2]['title'] = 7
    for row in rows:
        row['title'] = str(row['title']) if row is not rows[2] else row['title']
    pq.write_table(pa.Table.from_pylist(rows[2:]), tmp_path / 'bad.parquet')
    with pytest.raises(ValueError, match=r'bad.parquet, row 1: "title" must be a string, got int'):
        build('ZeroCorpusDataset', {**kw, 'ann_file': 'bad.parquet'})
    mini.write_jsonl(tmp_path / 'noimage.jsonl', [rows[0], {'title': '无图'}])
    with pytest.raises(ValueError, match=r'noimage.jsonl, line 2: missing or empty image path'):
        build('ZeroCorpusDataset', {**kw, 'ann_file': 'noimage.jsonl'})
    with pytest.raises(ValueError, match='unknown annotation format'):
        build('ZeroCorpusDataset', {**kw, 'ann_file': 'train.txt'})


def test_unreadable_image_skipped_in_training(tmp_path, logs):
    ds = build('ZeroCorpusDataset', mini.write_zero_corpus(tmp_path, corrupt=True)['train'])
    assert ds.get_data_info(6)['img_path'].endswith('truncated.jpg')
    assert ds[6]['data_samples'].image_idx != 6 and ds.num_unreadable_images == 1
    assert any('truncated.jpg' in m for m in logs)


def test_runner_epochs_draw_their_texts(tmp_path, tiny_model_cfg):
    """Through mmengine's Runner: DistSamplerSeedHook -> DatasetEpochSampler -> a persistent worker."""
    from mmengine.hooks import Hook

    kw = mini.write_zero_corpus(tmp_path / 'data', num_images=6)['train']
    pipeline = [dict(type='LoadImage'),
                dict(type='PackInputs', algorithm_keys=['text', 'image_idx', 'text_idx'])]
    seen = collections.defaultdict(dict)

    class RecordTexts(Hook):
        def before_train_iter(self, runner, batch_idx, data_batch=None):
            for sample in data_batch['data_samples']:
                seen[runner.epoch][sample.image_idx] = sample.text

    runner = Runner(
        model=tiny_model_cfg, work_dir=str(tmp_path / 'work'), default_scope='r2d2lib',
        train_dataloader=dict(batch_size=3, num_workers=1, persistent_workers=True,
                              sampler=dict(type='DatasetEpochSampler', shuffle=True),
                              dataset=dict(type='ZeroCorpusDataset', pipeline=pipeline, seed=11, **kw),
                              collate_fn=dict(type='pseudo_collate')),
        train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=3),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-4)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=10**6, save_last=False),
                           sampler_seed=dict(type='DistSamplerSeedHook')),
        custom_hooks=[RecordTexts()], randomness=dict(seed=0), log_level='WARNING')
    runner.train()
    ds = runner.train_dataloader.dataset
    runner.train_loop.dataloader._iterator._shutdown_workers()
    assert sorted(seen) == [0, 1, 2]
    for epoch, texts in seen.items():
        assert sorted(texts) == list(range(6))
        for idx, text in texts.items():  # image_idx == record index here
            cands = ds.get_data_info(idx)['texts']
            assert text == cands[choose_text(11, epoch, idx, len(cands))]
    assert seen[0] != seen[1] or seen[1] != seen[2]
