"""The hostile corpus trains: every skip named (file and line, path), counted once, in one report.

Fails on the code of before: empty captions were "dropped 2 record(s)" without a place, images
over a pixel limit could not be configured or counted, a lone surrogate in a caption surfaced in
training as tokenizers' TypeError, skips inside DataLoader workers never reached the main
process, truncation was silent and there was no data report.
"""
import copy
import json

import pytest
from mmengine.dataset import pseudo_collate
from mmengine.logging import MMLogger
from torch.utils.data import DataLoader

from r2d2lib.datasets.data_report import REPORT_FILE, DataReport, DataReportHook, sample_skips
from r2d2lib.datasets.zero_shards import ZeroCorpusShardDataset
from r2d2lib.engine import StrictRunner
from r2d2lib.io.images import ImageTooLargeError, UnreadableImageError
from r2d2lib.registry import DATASETS

from . import miniature as mini
from .helpers import PIPELINE as SHARD_PIPELINE
from .hostile import EMPTY_LINES, LONG_CAPTION, write_hostile_corpus

PIPELINE = [dict(type='LoadImage', max_pixels=50_000),
            dict(type='Resize', scale=(32, 32), keep_ratio=False, interpolation='bicubic', backend='pillow'),
            dict(type='PackInputs', algorithm_keys=['text', 'image_idx', 'text_idx'], meta_keys=['img_path'])]
IMAGE_ROWS = {'unreadable': ['not_image.jpg', 'truncated.png'], 'too_large': ['big.png', 'bomb_header.png'],
              'missing': ['missing.png']}


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    return write_hostile_corpus(tmp_path_factory.mktemp('hostile'))


def build(corpus, **kwargs):
    return DATASETS.build(dict(type='RetrievalDataset', data_root=str(corpus['root']),
                               ann_file=str(corpus['ann_file']), pipeline=PIPELINE, **kwargs))


def names(examples):
    return sorted(e.rsplit('/', 1)[-1] for e in examples)


def test_empty_captions_are_named_by_file_and_line(corpus, logs):
    ds = build(corpus)
    ann = str(corpus['ann_file'])
    places = [f'{ann}, line {n}' for n in EMPTY_LINES]
    assert ds.num_empty_captions == 2 and ds.data_report.examples['empty_caption'] == places
    assert ds.data_report.counts['missing'] == 1
    assert names(ds.data_report.examples['missing']) == ['missing.png']
    message = next(m for m in logs if 'empty caption' in m)
    assert all(p in message for p in places)
    assert len(ds) == 15  # 18 lines: 2 empty captions and 1 missing image dropped


def test_a_lone_surrogate_in_a_caption_stops_with_file_and_line(corpus):
    with pytest.raises(ValueError, match=rf"{corpus['surrogate_file']}, line 2: the caption is not valid "
                                         r"Unicode: character 1 is a lone surrogate '\\ud800'"):
        DATASETS.build(dict(type='RetrievalDataset', data_root=str(corpus['root']),
                            ann_file=str(corpus['surrogate_file']), pipeline=PIPELINE))


def test_images_skipped_in_workers_reach_the_main_process(corpus):
    ds = build(corpus)
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=pseudo_collate)
    report = DataReport()
    loaded = []
    for batch in loader:
        for sample in batch['data_samples']:
            report.add_events(sample_skips(sample))
            loaded.append(sample.img_path.rsplit('/', 1)[-1])
    assert ds.num_unreadable_images == 0  # the main process decoded nothing itself
    for row in ('unreadable', 'too_large'):
        assert report.counts[row] == 2 and names(report.examples[row]) == IMAGE_ROWS[row]
    assert len(loaded) == 15 and not set(loaded) & {'not_image.jpg', 'truncated.png', 'big.png',
                                                      'bomb_header.png'}


def test_the_hostile_corpus_trains_and_reports(corpus, tiny_model_cfg, tmp_path):
    work_dir = tmp_path / 'work'
    runner = StrictRunner.from_cfg(dict(
        model=copy.deepcopy(tiny_model_cfg), work_dir=str(work_dir),
        experiment_name=f'hostile-{tmp_path.name}',
        default_scope='r2d2lib',
        train_dataloader=dict(batch_size=4, num_workers=2, sampler=dict(type='DefaultSampler', shuffle=True),
                              collate_fn=dict(type='default_collate'),
                              dataset=dict(type='RetrievalDataset', data_root=str(corpus['root']),
                                           ann_file=str(corpus['ann_file']), pipeline=PIPELINE)),
        train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=2),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1), checkpoint=None),
        custom_hooks=[dict(type='DataReportHook')], randomness=dict(seed=0), log_level='INFO'))
    runner.train()
    report = json.loads((work_dir / REPORT_FILE).read_text(encoding='utf-8'))
    assert [e['epoch'] for e in report['epochs']] == [1, 2]
    total = report['total']
    for row, expected in IMAGE_ROWS.items():  # counted once per run, though drawn every epoch
        assert total[row]['count'] == len(expected) and names(total[row]['examples']) == expected
    assert total['empty_caption'] == dict(count=2, examples=[f"{corpus['ann_file']}, line {n}"
                                                             for n in EMPTY_LINES])
    assert total['truncated']['count'] == 2  # the 10,000-character caption, once per epoch
    assert total['truncated']['examples'][0].startswith(repr(LONG_CAPTION[:40])[:-1])
    assert report['epochs'][0]['truncated']['count'] == 1
    log = next(work_dir.rglob('*.log')).read_text(encoding='utf-8')
    assert 'data report after epoch 1' in log and 'data report after epoch 2' in log
    assert log.count('2 captions longer than max_length=40 tokens were truncated') == 1


def test_hook_counts_the_truncations_of_training_only(corpus, tiny_model_cfg, tmp_path):
    """Truncations before training (a gallery built, a search) are not the run's."""
    from r2d2lib.models.data_preprocessors import ImageTextDataPreprocessor
    pre = ImageTextDataPreprocessor(**{k: v for k, v in tiny_model_cfg['data_preprocessor'].items()
                                       if k != 'type'})
    pre.tokenize([LONG_CAPTION])
    ds = build(corpus)

    class Runner:
        model = type('Model', (), {'data_preprocessor': pre})()
        train_dataloader = DataLoader(ds)
        logger = MMLogger.get_current_instance()
        work_dir, epoch, iter = str(tmp_path), 0, 0

    hook = DataReportHook()
    hook.before_train(Runner)
    pre.tokenize([LONG_CAPTION, '好'])
    hook.after_train_epoch(Runner)
    total = json.loads((tmp_path / REPORT_FILE).read_text())['total']
    assert total['truncated']['count'] == 1 and total['empty_caption']['count'] == 2


@pytest.mark.parametrize('num_workers', [0, 2])
def test_shard_skips_reach_the_main_process_even_after_the_last_sample(tmp_path, num_workers):
    """Shard 0 ends with three bad samples; its worker has no later sample to carry them but its last."""
    kw = mini.write_zero_shards(tmp_path, num_shards=2, samples_per_shard=3, corrupt=True)['train']
    ds = ZeroCorpusShardDataset(**kw, pipeline=SHARD_PIPELINE, repeat=False, rank=0, world_size=1,
                                shuffle_shards=False)
    report = DataReport()
    loader = DataLoader(ds, batch_size=None, num_workers=num_workers, collate_fn=lambda x: x)
    assert len([report.add_events(sample_skips(s['data_samples'])) for s in loader]) == 6
    shard0 = str(tmp_path / 'shards' / '00000.tar')
    assert report.counts['unreadable'] == 1 and report.examples['unreadable'] == [f'{shard0}:000000003']
    assert report.counts['corrupt'] == 2
    assert sorted(report.examples['corrupt']) == [f'{shard0}:000000004.json', f'{shard0}:000000005']


def test_in_test_mode_every_usable_image_loads_and_every_bad_one_is_an_error_naming_it(corpus):
    ds = build(corpus, test_mode=True)
    outcomes = {}
    for index in range(len(ds)):
        name = ds.get_data_info(index)['img_path'].rsplit('/', 1)[-1]
        try:
            ds[index]
            outcomes[name] = 'ok'
        except UnreadableImageError as error:
            assert name in str(error) and f'record {index} of' in str(error)
            outcomes[name] = type(error).__name__
    assert outcomes == {
        'plain.png': 'ok', 'grey16.png': 'ok', 'rotated.png': 'ok', 'transparent.png': 'ok',
        'palette_transparent.png': 'ok', 'float.tiff': 'ok', 'int32.tiff': 'ok', 'cmyk.jpg': 'ok',
        'half_alpha.png': 'ok', 'truncated.png': 'UnreadableImageError',
        'not_image.jpg': 'UnreadableImageError', 'big.png': 'ImageTooLargeError',
        'bomb_header.png': 'ImageTooLargeError'}
    assert issubclass(ImageTooLargeError, UnreadableImageError)
