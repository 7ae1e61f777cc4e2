"""The retrieval val / test loops inside a real mmengine Runner: hand-computed cases on table
models, a brute-force dense reference on the tiny R2D2 (with and without re-ranking, several
positives per text, gallery-only images, text-to-image only). 2 processes: test_distributed_eval_loop.py."""
import copy

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope

from r2d2lib.engine.runners import RetrievalTestLoop, RetrievalValLoop
from r2d2lib.registry import MODELS
from tests.evaluation.loop_helpers import (
    DualTableModel,
    RecordDataset,
    TableModel,
    circle_tables,
    dense_recalls,
    make_runner,
    one_thread,
    pair_records,
    read_jsonl,
    strip,
)

single_thread = pytest.fixture(autouse=True)(one_thread)

KEYS = ['i2t_R@1', 'i2t_R@5', 'i2t_R@10', 't2i_R@1', 't2i_R@5', 't2i_R@10', 'R@M']
# circle tables: i2t correct at rank 3, t2i at rank 2
CIRCLE = dict(zip(KEYS, [0, 100, 100, 0, 100, 100, 400 / 6]))
CIRCLE_RECORDS = pair_records([[t // 2] for t in range(16)])
CIRCLE_POSITIVE = [(t, t // 2) for t in range(16)]


class RecordHook(Hook):
    """Records the loop-level hooks called and the metrics they got."""

    def __init__(self) -> None:
        self.calls, self.metrics = [], []

    def before_val(self, runner):
        self.calls.append('before_val')

    def before_val_epoch(self, runner):
        self.calls.append('before_val_epoch')

    def after_val_epoch(self, runner, metrics=None):
        self.calls.append('after_val_epoch')
        self.metrics.append(metrics)

    def after_val(self, runner):
        self.calls.append('after_val')

    def before_test(self, runner):
        self.calls.append('before_test')

    def after_test_epoch(self, runner, metrics=None):
        self.calls.append('after_test_epoch')
        self.metrics.append(metrics)


def test_perfect_embeddings_give_100_and_call_the_hooks(tmp_path):
    eye = torch.eye(8)
    hook = RecordHook()
    model = TableModel(eye, eye[torch.arange(16) // 2], CIRCLE_POSITIVE)
    runner = make_runner(tmp_path, model, RecordDataset(CIRCLE_RECORDS), hooks=[hook], top_k=4,
                         chunk_size=3)
    assert isinstance(runner.val_loop, RetrievalValLoop)
    metrics = strip(runner.val())
    assert metrics.keys() == set(KEYS) | {f'rerank_{k}' for k in KEYS}
    assert all(v == pytest.approx(100.0) for v in metrics.values())
    assert hook.calls == ['before_val', 'before_val_epoch', 'after_val_epoch', 'after_val']
    assert hook.metrics[0]['retrieval/R@M'] == pytest.approx(100.0)


@pytest.mark.parametrize('top_k,expected_rerank', [
    (4, {k: 100.0 for k in KEYS}),
    # i2t: own captions are outside the top-2 -> unchanged by re-ranking
    (2, dict(CIRCLE, **{'t2i_R@1': 100.0, 'R@M': 500 / 6})),
    (1, CIRCLE),
])
def test_rerank_fixes_embedding_ranking_and_embeds_once(tmp_path, top_k, expected_rerank):
    model = TableModel(*circle_tables(), CIRCLE_POSITIVE)
    runner = make_runner(tmp_path, model, RecordDataset(CIRCLE_RECORDS), top_k=top_k, chunk_size=5,
                         rerank_batch_size=7)
    metrics = strip(runner.val())
    for key in KEYS:
        assert metrics[key] == pytest.approx(CIRCLE[key]), key
        assert metrics[f'rerank_{key}'] == pytest.approx(expected_rerank[key]), key
    # every image re-ranks top_k texts and every text top_k images
    assert model.pairs_scored == 8 * top_k + 16 * top_k
    # each image and each text went through its tower exactly once (16 records, 8 images)
    assert sorted(model.images_embedded) == list(range(8))
    assert sorted(model.texts_embedded) == list(range(16))


def test_dual_encoder_without_rerank_and_clear_error_with_it(tmp_path):
    hook = RecordHook()
    model = DualTableModel(*circle_tables())
    runner = make_runner(tmp_path, model, RecordDataset(CIRCLE_RECORDS), hooks=[hook], rerank=False)
    assert isinstance(runner.test_loop, RetrievalTestLoop)
    assert strip(runner.test()) == pytest.approx(CIRCLE)
    assert hook.calls[0] == 'before_test'
    runner = make_runner(tmp_path, DualTableModel(*circle_tables()), RecordDataset(CIRCLE_RECORDS))
    with pytest.raises(ValueError, match='set rerank=False for dual encoders'):
        runner.val()


def test_multi_positive_gallery_only_hand_case(tmp_path):
    """3 texts, 4 images; text 1 has images 1 and 2; image 3 is gallery-only.

    Embeddings on a line (1-D): images at 0, 1, 2, 3 -> unit vectors at angles; texts placed
    so that text 0 ranks images [3, 0, ...], text 1 ranks [1, ...], text 2 ranks [3, 2, ...].
    """
    def unit(deg):
        a = torch.tensor(deg) * torch.pi / 180
        return torch.stack([a.cos(), a.sin()], dim=1)

    images = unit([0.0, 60.0, 100.0, 10.0])
    texts = unit([7.0, 70.0, 40.0])
    # t2i order: t0 -> [3 (3 deg), 0 (7), 1, 2]: R@1 miss, R@2 hit
    #            t1 -> [1 (10), 2 (30), ...]: hit at 1 (both 1 and 2 are positive)
    #            t2 -> [1 (20), 3 (30), 0 (40), 2 (60)]: its positive 2 comes 4th
    # i2t (queries 0, 1, 2; image 3 is gallery-only): image 0 -> [t0 (7), t2 (40), t1]: hit at 1
    #            image 1 -> [t1 (10), t2 (20), t0]: hit at 1; image 2 -> [t1 (30), t2, t0]: hit at 1
    records = pair_records([[0], [1, 2], [2]], gallery_only=[3])
    metric = dict(type='RetrievalMetric', ks=(1, 2))
    model = TableModel(images, texts, [(0, 0), (1, 1), (1, 2), (2, 2)])
    runner = make_runner(tmp_path, model, RecordDataset(records), metric=metric, top_k=4)
    metrics = strip(runner.val())
    assert metrics['i2t_R@1'] == pytest.approx(100.0)
    assert metrics['t2i_R@1'] == pytest.approx(100 / 3)
    assert metrics['t2i_R@2'] == pytest.approx(200 / 3)
    assert metrics['R@M'] == pytest.approx((100 + 100 + 100 / 3 + 200 / 3) / 4)
    assert metrics['rerank_t2i_R@1'] == pytest.approx(100.0)  # the cross encoder knows the truth
    # image 3 was embedded (a t2i candidate) but was no i2t query: 3 images x 4 + 3 texts x 4 pairs
    assert sorted(model.images_embedded) == [0, 1, 2, 3]
    assert model.pairs_scored == 3 * 3 + 3 * 4  # i2t: 3 texts only
    # text-to-image only (MUGE): no i2t work, R@M = mean of the t2i recalls
    model = TableModel(images, texts, [(0, 0), (1, 1), (1, 2), (2, 2)])
    runner = make_runner(tmp_path, model, RecordDataset(records), rerank=False,
                         metric=dict(type='RetrievalMetric', ks=(1, 2), directions=('t2i', )))
    metrics = strip(runner.val())
    assert metrics == pytest.approx({'t2i_R@1': 100 / 3, 't2i_R@2': 200 / 3, 'R@M': 50.0})


# ----------------------------------------------------------------- tiny R2D2 vs dense reference
def toy_records(toy_data, multi_positive: bool):
    """The 8 toy test images with 2 captions each; with ``multi_positive`` text 0 is also positive
    for image 3, text 5 for image 0, and 2 training images are gallery-only."""
    records = []
    paths = {}
    for text_idx, line in enumerate(read_jsonl(toy_data / 'test.jsonl')):
        path = str(toy_data / line['image_path'])
        image_idx = paths.setdefault(path, len(paths))
        records.append(dict(img_path=path, image_id=str(image_idx), text=line['text'],
                            image_idx=image_idx, text_idx=text_idx))
    if multi_positive:
        extra = {0: 3, 5: 0}
        records += [dict(records[t], img_path=records[2 * i]['img_path'], image_idx=i)
                    for t, i in extra.items()]
        for k in range(2):
            records.append(dict(img_path=str(toy_data / 'images' / f'train_{k:06d}.png'),
                                image_id=f'g{k}', text=None, image_idx=len(paths) + k, text_idx=-1))
    return records


def build_tiny_r2d2(cfg):
    init_default_scope('r2d2lib')
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(cfg))
    model.eval()
    return model


@torch.no_grad()
def dense_reference(model, dataset, ks, top_k, directions=('i2t', 't2i')):
    """Every unique image and text embedded on its own, a full [images, texts] similarity matrix,
    the cross encoder on each re-ranked pair alone."""
    images, texts, positive = {}, {}, set()
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        if info['image_idx'] not in images:
            pixels = model.data_preprocessor.normalize(dataset[i]['inputs'][None])
            images[info['image_idx']] = model.image_features(pixels)
        if info['text'] is not None:
            positive.add((info['text_idx'], info['image_idx']))
            if info['text_idx'] not in texts:
                tokens = model.data_preprocessor.tokenize([info['text']])
                hidden, embeds = model.text_features(tokens['input_ids'], tokens['attention_mask'])
                texts[info['text_idx']] = (hidden, embeds, tokens['attention_mask'])
    image_embeds = torch.cat([images[i][1] for i in range(len(images))])
    text_embeds = torch.cat([texts[t][1] for t in range(len(texts))])
    sims = image_embeds @ text_embeds.t()

    def match(image, text):
        return model.match_features(images[image][0], texts[text][0], texts[text][2])

    queries = {'i2t': sorted({i for _, i in positive}), 't2i': list(range(len(texts)))}
    out = {}
    for ranking, depth in (('', 0), ('rerank_', top_k)):
        recalls = []
        for direction in directions:
            values = dense_recalls(sims, positive, direction, ks, queries[direction], depth, match)
            for k in ks:
                out[f'{ranking}{direction}_R@{k}'] = values[k]
                recalls.append(values[k])
        out[f'{ranking}R@M'] = sum(recalls) / len(recalls)
    return out


@pytest.mark.parametrize('multi_positive,directions,rerank', [
    (False, ('i2t', 't2i'), True),
    (True, ('i2t', 't2i'), True),
    (True, ('t2i', ), False),
])
def test_tiny_r2d2_equals_dense_reference(tmp_path, toy_data, tiny_model_cfg, pipeline32,
                                          multi_positive, directions, rerank):
    model = build_tiny_r2d2(tiny_model_cfg)
    dataset = RecordDataset(toy_records(toy_data, multi_positive), pipeline=pipeline32)
    ks = (1, 2, 5)
    expected = dense_reference(model, dataset, ks, top_k=3, directions=directions)
    if not rerank:
        expected = {k: v for k, v in expected.items() if not k.startswith('rerank_')}
    metric = dict(type='RetrievalMetric', ks=ks, directions=directions)
    runner = make_runner(tmp_path, model, dataset, metric=metric, batch_size=3, top_k=3, chunk_size=4,
                         rerank_batch_size=5, rerank=rerank)
    metrics = strip(runner.test())
    assert metrics == pytest.approx(expected)
    assert 0 < metrics['R@M'] < 100  # not a degenerate case


def test_unknown_loop_argument_names_the_loop(tmp_path):
    runner = make_runner(tmp_path, DualTableModel(*circle_tables()), RecordDataset(CIRCLE_RECORDS), topk=3)
    with pytest.raises(TypeError, match="RetrievalValLoop: .*'topk'"):
        runner.val_loop
