"""Tests of the retrieval val / test loops inside a real mmengine Runner."""
import math
import os
import uuid
from datetime import timedelta
from typing import Dict, List

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from r2d2lib.engine.runners import RetrievalTestLoop, RetrievalValLoop

NUM_IMAGES = 8


class PairDataset(Dataset):
    """(image, text) pairs given by their indices; two captions per image."""

    def __init__(self, num_texts: int = 2 * NUM_IMAGES) -> None:
        self.num_texts = num_texts

    def __len__(self) -> int:
        return self.num_texts

    def __getitem__(self, idx: int) -> dict:
        return dict(image_idx=idx // 2, text_idx=idx)


def circle_embeds(num_texts: int = 2 * NUM_IMAGES):
    """Images on a circle; captions lie nearer the next image than their own.

    i2t: an image's own captions come 3rd and 4th (after the previous image's
    captions); t2i: a caption's image comes 2nd.
    """
    step = 2 * math.pi / NUM_IMAGES
    img_angle = torch.arange(NUM_IMAGES) * step
    txt_angle = torch.tensor([(t // 2) * step + (0.58 if t % 2 == 0 else 0.62)
                              * step for t in range(num_texts)])

    def unit(a):
        return torch.stack([a.cos(), a.sin()], dim=1)

    return unit(img_angle), unit(txt_angle)


def perfect_embeds(num_texts: int = 2 * NUM_IMAGES):
    """One-hot embeddings: every caption equals its image."""
    eye = torch.eye(NUM_IMAGES)
    return eye, eye[torch.arange(num_texts) // 2]


class FakeRetrievalModel(BaseModel):
    """Looks embeddings up in tables; ``match_features`` knows the truth."""

    def __init__(self, image_embeds: torch.Tensor,
                 text_embeds: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer('image_table', image_embeds)
        self.register_buffer('text_table', text_embeds)
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.pairs_scored = 0

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def val_step(self, data: dict) -> Dict[str, torch.Tensor]:
        text_idx = torch.as_tensor(data['text_idx'])
        image_idx = torch.as_tensor(data['image_idx'])
        batch = len(text_idx)
        length = 2 + int(text_idx[0]) % 3  # dynamic padding per batch
        text_hidden = torch.zeros(batch, length, 1)
        text_hidden[:, 0, 0] = image_idx.float()
        text_mask = torch.zeros(batch, length, dtype=torch.long)
        text_mask[:, 0] = 1
        return dict(image_embeds=self.image_table[image_idx],
                    text_embeds=self.text_table[text_idx],
                    image_tokens=image_idx.float().view(batch, 1, 1),
                    text_hidden=text_hidden, text_mask=text_mask,
                    image_idx=image_idx, text_idx=text_idx)

    test_step = val_step

    def match_features(self, image_tokens, text_hidden, text_mask):
        assert image_tokens.shape[0] == text_hidden.shape[0]
        assert text_mask.shape == text_hidden.shape[:2]
        self.pairs_scored += len(image_tokens)
        return (image_tokens[:, 0, 0] == text_hidden[:, 0, 0]).float()


class RecordHook(Hook):
    """Records the loop hooks called and what they got."""

    def __init__(self) -> None:
        self.calls: List[str] = []
        self.outputs: List[dict] = []
        self.metrics: List[dict] = []

    def _record(self, name, outputs=None, metrics=None):
        self.calls.append(name)
        if outputs is not None:
            self.outputs.append(outputs)
        if metrics is not None:
            self.metrics.append(metrics)

    def before_val(self, runner):
        self._record('before_val')

    def before_val_epoch(self, runner):
        self._record('before_val_epoch')

    def before_val_iter(self, runner, batch_idx, data_batch=None):
        self._record('before_val_iter')

    def after_val_iter(self, runner, batch_idx, data_batch=None,
                       outputs=None):
        self._record('after_val_iter', outputs=outputs)

    def after_val_epoch(self, runner, metrics=None):
        self._record('after_val_epoch', metrics=metrics)

    def after_val(self, runner):
        self._record('after_val')

    def before_test(self, runner):
        self._record('before_test')

    def after_test_epoch(self, runner, metrics=None):
        self._record('after_test_epoch', metrics=metrics)


def make_runner(work_dir, model, num_texts=2 * NUM_IMAGES, batch_size=3,
                hooks=(), **loop_cfg) -> Runner:
    dataloader = dict(dataset=PairDataset(num_texts), batch_size=batch_size,
                      num_workers=0,
                      sampler=dict(type='DefaultSampler', shuffle=False),
                      collate_fn=dict(type='pseudo_collate'))
    return Runner(
        model=model, work_dir=str(work_dir),
        experiment_name=f'retrieval_{uuid.uuid4().hex}',
        default_scope='r2d2lib',
        val_dataloader=dataloader,
        val_cfg=dict(type='RetrievalValLoop', **loop_cfg),
        val_evaluator=dict(type='RetrievalMetric'),
        test_dataloader=dataloader,
        test_cfg=dict(type='RetrievalTestLoop', **loop_cfg),
        test_evaluator=dict(type='RetrievalMetric'),
        custom_hooks=list(hooks), log_level='WARNING',
        env_cfg=dict(dist_cfg=dict(backend='gloo')))


def strip(metrics: dict) -> dict:
    assert all(k.startswith('retrieval/') for k in metrics)
    return {k.split('/', 1)[1]: v for k, v in metrics.items()}


KEYS = ['i2t_R@1', 'i2t_R@5', 'i2t_R@10', 't2i_R@1', 't2i_R@5', 't2i_R@10',
        'R@M']
# circle embeddings: i2t correct at rank 3, t2i at rank 2
CIRCLE = dict(zip(KEYS, [0, 100, 100, 0, 100, 100, 400 / 6]))


def test_perfect_embeddings_give_100(tmp_path):
    hook = RecordHook()
    runner = make_runner(tmp_path, FakeRetrievalModel(*perfect_embeds()),
                         hooks=[hook], top_k=4, chunk_size=3)
    assert isinstance(runner.val_loop, RetrievalValLoop)
    metrics = strip(runner.val())
    assert metrics.keys() == set(KEYS) | {f'rerank_{k}' for k in KEYS}
    assert all(v == pytest.approx(100.0) for v in metrics.values())
    num_batches = math.ceil(2 * NUM_IMAGES / 3)
    assert hook.calls == (['before_val', 'before_val_epoch'] +
                          ['before_val_iter', 'after_val_iter'] * num_batches +
                          ['after_val_epoch', 'after_val'])
    assert 'text_hidden' in hook.outputs[0]
    assert hook.metrics[0]['retrieval/R@M'] == pytest.approx(100.0)


@pytest.mark.parametrize('top_k,expected_rerank', [
    (4, {k: 100.0 for k in KEYS}),
    # i2t: own captions are outside the top-2 -> unchanged by re-ranking
    (2, dict(CIRCLE, **{'t2i_R@1': 100.0, 'R@M': 500 / 6})),
    (1, CIRCLE),
])
def test_rerank_fixes_embedding_ranking(tmp_path, top_k, expected_rerank):
    model = FakeRetrievalModel(*circle_embeds())
    runner = make_runner(tmp_path, model, top_k=top_k, chunk_size=5,
                         rerank_batch_size=7)
    metrics = strip(runner.val())
    for key in KEYS:
        assert metrics[key] == pytest.approx(CIRCLE[key]), key
        assert metrics[f'rerank_{key}'] == pytest.approx(
            expected_rerank[key]), key
    # every image re-ranks top_k texts and every text top_k images
    assert model.pairs_scored == NUM_IMAGES * top_k + 2 * NUM_IMAGES * top_k


def test_test_loop_without_rerank(tmp_path):
    hook = RecordHook()
    model = FakeRetrievalModel(*circle_embeds())
    runner = make_runner(tmp_path, model, hooks=[hook], top_k=4,
                         rerank=False)
    assert isinstance(runner.test_loop, RetrievalTestLoop)
    metrics = strip(runner.test())
    assert metrics == pytest.approx(CIRCLE)
    assert model.pairs_scored == 0
    assert hook.calls[0] == 'before_test'
    assert hook.metrics[0] == pytest.approx(
        {f'retrieval/{k}': v for k, v in CIRCLE.items()})


def _dist_worker(rank, world_size, port, work_dir, queue):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    os.chdir(work_dir)  # mmengine's collect_results_cpu writes .dist_test/
    torch_dist.init_process_group('gloo', rank=rank, world_size=world_size,
                                  timeout=timedelta(seconds=60))
    try:
        torch.set_num_threads(1)
        model = FakeRetrievalModel(*circle_embeds(15))
        runner = make_runner(work_dir, model, num_texts=15, batch_size=2,
                             top_k=2, chunk_size=3)
        queue.put((rank, runner.val(), model.pairs_scored))
    finally:
        torch_dist.destroy_process_group()


def test_two_ranks_shard_and_dedupe(tmp_path, free_port):
    """15 texts over 2 ranks: the sampler pads a duplicate, queries shard."""
    world_size, port = 2, free_port
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    procs = [ctx.Process(target=_dist_worker,
                         args=(rank, world_size, port, str(tmp_path), queue))
             for rank in range(world_size)]
    for proc in procs:
        proc.start()
    try:
        results = [queue.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(timeout=30)
            assert proc.exitcode == 0
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
    # image 7 lacks its 2nd caption, so image 0's own caption comes 2nd
    expected = dict(CIRCLE, **{'i2t_R@1': 12.5, 't2i_R@1': 100.0,
                               'R@M': 512.5 / 6})
    results.sort(key=lambda r: r[0])
    for _, metrics, _ in results:
        metrics = strip(metrics)
        for key in KEYS:
            assert metrics[key] == pytest.approx(CIRCLE[key]), key
            assert metrics[f'rerank_{key}'] == pytest.approx(
                expected[key]), key
    # each rank re-ranks only its share: 8 images + 15 texts, top_k=2
    assert sum(r[2] for r in results) == (NUM_IMAGES + 15) * 2
    assert all(r[2] > 0 for r in results)


def test_gather_and_build_gallery_dedupes_and_orders():
    from r2d2lib.engine.runners.retrieval_loop import build_gallery, gather_features

    def texts(text_idx, image_idx, length):
        n = len(text_idx)
        return dict(text_idx=torch.tensor(text_idx),
                    image_idx=torch.tensor(image_idx),
                    text_embeds=torch.tensor(text_idx).float()[:, None],
                    text_hidden=torch.ones(n, length, 2),
                    text_mask=torch.ones(n, length, dtype=torch.bool))

    def images(image_idx):
        ids = torch.tensor(image_idx, dtype=torch.long)
        return dict(image_idx=ids, image_embeds=ids.float()[:, None],
                    image_tokens=ids.float()[:, None, None])

    # out of order, text 0 duplicated (sampler padding), varying lengths
    text_feats = gather_features([texts([3, 1], [5, 2], 2),
                                  texts([0, 2, 0], [2, 5, 2], 4)])
    assert text_feats['text_hidden'].shape == (5, 4, 2)
    assert text_feats['text_mask'][:2, 2:].sum() == 0
    image_feats = gather_features([images([5, 2]), images([]),
                                   images([2])])
    gallery = build_gallery(text_feats, image_feats)
    assert gallery['text_embeds'].flatten().tolist() == [0, 1, 2, 3]
    assert gallery['image_embeds'].flatten().tolist() == [2, 5]
    assert gallery['image_tokens'].shape == (2, 1, 1)
    assert gallery['txt2img'].tolist() == [0, 0, 1, 1]
    assert gallery['text_mask'].sum(1).tolist() == [4, 2, 4, 2]
    with pytest.raises(RuntimeError):
        build_gallery(text_feats, gather_features([images([2])]))


def test_fp16_is_ignored_on_cpu(tmp_path):
    runner = make_runner(tmp_path, FakeRetrievalModel(*perfect_embeds()),
                         top_k=3, fp16=True)
    metrics = strip(runner.val())
    assert metrics['rerank_R@M'] == pytest.approx(100.0)
