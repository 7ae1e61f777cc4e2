"""Shared pieces of the evaluation-loop tests: a record dataset, table-lookup models, a dense reference."""
import copy
import json
import math
import uuid
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.dataset import BaseDataset
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn


class RecordDataset(BaseDataset):
    """A test set given as a list of records. Without a pipeline an image is a 3x2x2 uint8 block
    filled with its ``image_idx`` (what :class:`TableModel` reads back)."""

    def __init__(self, records: List[dict], pipeline=(), metainfo: Optional[dict] = None) -> None:
        self._records = copy.deepcopy(records)
        super().__init__(ann_file='', pipeline=list(pipeline), test_mode=True, metainfo=metainfo,
                         serialize_data=False)

    def load_data_list(self) -> List[dict]:
        return copy.deepcopy(self._records)

    def prepare_data(self, idx: int):
        if self.pipeline.transforms:
            return super().prepare_data(idx)
        info = self.get_data_info(idx)
        return dict(inputs=torch.full((3, 2, 2), info['image_idx'], dtype=torch.uint8),
                    data_samples=dict(info))


class TablePreprocessor(nn.Module):
    """normalize: uint8 block -> float; tokenize: ``'t<k>'`` -> ids ``[[k + 1, 0]]`` (mask ``[[1, 0]]``)."""

    def normalize(self, images):
        return images.float()

    def tokenize(self, texts):
        ids = torch.tensor([[int(t[1:]) + 1, 0] for t in texts])
        return dict(input_ids=ids, attention_mask=(ids > 0).long())


class TableModel(BaseModel):
    """Embeddings looked up in tables; ``match_features`` is 1 exactly on the ``positive`` pairs."""

    def __init__(self, image_table, text_table, positive: Sequence[tuple] = ()) -> None:
        super().__init__(data_preprocessor=TablePreprocessor())
        self.register_buffer('image_table', image_table)
        self.register_buffer('text_table', text_table)
        self.positive = set(positive)
        self.weight = nn.Parameter(torch.zeros(1))
        self.pairs_scored = 0
        self.images_embedded: List[int] = []
        self.texts_embedded: List[int] = []

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def image_features(self, pixels):
        ids = pixels[:, 0, 0, 0].long()
        self.images_embedded += ids.tolist()
        return ids.float().view(-1, 1, 1), self.image_table[ids]

    def text_features(self, input_ids, attention_mask):
        ids = input_ids[:, 0] - 1
        self.texts_embedded += ids.tolist()
        return ids.float().view(-1, 1, 1).expand(-1, 2, 1), self.text_table[ids]

    def match_features(self, image_tokens, text_hidden, text_mask):
        assert image_tokens.shape[0] == text_hidden.shape[0] == text_mask.shape[0]
        self.pairs_scored += len(image_tokens)
        pairs = zip(text_hidden[:, 0, 0].long().tolist(), image_tokens[:, 0, 0].long().tolist())
        return torch.tensor([float(p in self.positive) for p in pairs])


class DualTableModel(TableModel):
    """A dual encoder: no cross encoders."""

    match_features = None


def pair_records(txt2imgs: Sequence[Sequence[int]], gallery_only: Sequence[int] = ()) -> List[dict]:
    """Records of texts ``t<k>`` with positive images ``txt2imgs[k]``, then gallery-only images."""
    records = [dict(img_path=f'img{i}', text=f't{t}', image_idx=i, text_idx=t)
               for t, images in enumerate(txt2imgs) for i in images]
    records += [dict(img_path=f'img{i}', text=None, image_idx=i, text_idx=-1) for i in gallery_only]
    return records


def make_runner(work_dir, model, dataset, loop: str = 'Retrieval', metric: Optional[dict] = None,
                batch_size: int = 3, hooks=(), **loop_cfg) -> Runner:
    """A Runner with the given dataset as val and test set."""
    metric = metric or dict(type='RetrievalMetric')
    dataloader = dict(dataset=dataset, batch_size=batch_size, num_workers=0,
                      sampler=dict(type='DefaultSampler', shuffle=False),
                      collate_fn=dict(type='pseudo_collate'))
    return Runner(model=model, work_dir=str(work_dir), experiment_name=f'eval_{uuid.uuid4().hex}',
                  default_scope='r2d2lib', val_dataloader=dataloader,
                  val_cfg=dict(type=f'{loop}ValLoop', **loop_cfg), val_evaluator=metric,
                  test_dataloader=dataloader, test_cfg=dict(type=f'{loop}TestLoop', **loop_cfg),
                  test_evaluator=metric, custom_hooks=list(hooks), log_level='WARNING',
                  env_cfg=dict(dist_cfg=dict(backend='gloo')))


def circle_tables(num_images: int = 8, num_texts: int = 16):
    """Images on a circle; caption t (of image t // 2) lies nearer image t // 2 + 1 than its own.

    i2t: an image's own captions come 3rd and 4th; t2i: a caption's image comes 2nd.
    """
    step = 2 * math.pi / num_images
    img_angle = torch.arange(num_images) * step
    txt_angle = torch.tensor([(t // 2) * step + (0.58 if t % 2 == 0 else 0.62) * step
                              for t in range(num_texts)])

    def unit(a):
        return torch.stack([a.cos(), a.sin()], dim=1)

    return unit(img_angle), unit(txt_angle)


def strip(metrics: dict, prefix: str = 'retrieval') -> dict:
    assert all(k.startswith(f'{prefix}/') for k in metrics), metrics
    return {k.split('/', 1)[1]: v for k, v in metrics.items()}


def read_jsonl(path) -> List[dict]:
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f if line.strip()]


def dense_recalls(sims: torch.Tensor, positive: set, direction: str, ks: Sequence[int],
                  queries: Sequence[int], rerank_top_k: int = 0, match=None) -> Dict[int, float]:
    """Brute force: the full score row of each query sorted, optionally the top k re-sorted by
    match + sim; R@k in percent. ``sims`` is ``[num_images, num_texts]``; ``positive`` holds
    (text, image) pairs; ``match(image, text)`` is the cross-encoder score."""
    hits = {k: 0 for k in ks}
    for q in queries:
        row = sims[q] if direction == 'i2t' else sims[:, q]
        order = sorted(range(len(row)), key=lambda c: -float(row[c]))
        if rerank_top_k:
            head = order[:rerank_top_k]
            pair = (lambda c: (q, c)) if direction == 'i2t' else (lambda c: (c, q))
            head.sort(key=lambda c: -(float(match(*pair(c))) + float(row[c])))
            order = head + order[rerank_top_k:]
        for k in ks:
            correct = [((c, q) if direction == 'i2t' else (q, c)) in positive for c in order[:k]]
            hits[k] += any(correct)
    return {k: 100.0 * v / len(queries) for k, v in hits.items()}


def one_thread():
    """Generator body of a fixture: torch on one thread (2 shared cores: 2 threads contend badly)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
