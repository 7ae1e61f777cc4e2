"""Val and test loops for image-text retrieval with cross-encoder re-ranking.

The loops run the model over the whole dataloader, gather every rank's
features, rank texts for each image (i2t) and images for each text (t2i) by
embedding similarity, optionally re-rank each query's top-k with the model's
matching probability, and feed one shard of ranked results per rank and
(ranking, direction) to the evaluator (e.g. ``RetrievalMetric``).

Model interface: ``val_step`` / ``test_step`` return a dict with
``image_embeds [B, D]``, ``text_embeds [B, D]`` (L2-normalised),
``image_tokens [B, T, C]``, ``text_hidden [B, L, H]``, ``text_mask [B, L]``,
``image_idx [B]`` and ``text_idx [B]``; ``match_features(image_tokens,
text_hidden, text_mask) -> [P]`` gives matching probabilities of pairs.
"""
import contextlib
from typing import Callable, ContextManager, Dict, List, Sequence, Set, Union

import torch
from mmengine.dist import all_gather_object, get_dist_info, is_main_process
from mmengine.evaluator import Evaluator
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import TestLoop, ValLoop
from torch import Tensor, nn
from torch.utils.data import DataLoader

from r2d2lib.evaluation.ranking import chunked_topk, rerank_topk
from r2d2lib.registry import LOOPS

# model outputs kept per text and per image; the *_MATCH_KEYS only to re-rank
TEXT_KEYS = ('text_idx', 'image_idx', 'text_embeds')
TEXT_MATCH_KEYS = ('text_hidden', 'text_mask')
IMAGE_KEYS = ('image_idx', 'image_embeds')
IMAGE_MATCH_KEYS = ('image_tokens', )
PADDED_KEYS = ('text_hidden', 'text_mask')  # padded along dim 1 (tokens)


def _pad_cat(tensors: List[Tensor], pad: bool) -> Tensor:
    """Concatenate on dim 0, zero-padding dim 1 to the longest if ``pad``."""
    if pad and tensors:
        length = max(t.shape[1] for t in tensors)
        tensors = [
            nn.functional.pad(t, [0, 0] * (t.dim() - 2) +
                              [0, length - t.shape[1]]) for t in tensors
        ]
    return torch.cat(tensors)


def gather_features(parts: List[Dict[str, Tensor]]) -> Dict[str, Tensor]:
    """Concatenate this rank's batch outputs and all-gather them over ranks."""
    if not parts:
        raise RuntimeError('The retrieval loop got no batch from its '
                           'dataloader on this rank.')
    _, world_size = get_dist_info()
    feats = {}
    for key in parts[0]:
        local = _pad_cat([p[key] for p in parts], key in PADDED_KEYS)
        pieces = all_gather_object(local) if world_size > 1 else [local]
        feats[key] = _pad_cat(pieces, key in PADDED_KEYS)
    return feats


def _first_occurrences(ids: Tensor) -> Tensor:
    """Positions of the first occurrence of each distinct id, ordered by id."""
    order = torch.argsort(ids, stable=True)
    sorted_ids = ids[order]
    first = torch.ones_like(sorted_ids, dtype=torch.bool)
    first[1:] = sorted_ids[1:] != sorted_ids[:-1]
    return order[first]


def build_gallery(texts: Dict[str, Tensor],
                  images: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Dedupe gathered features into unique texts and images plus ``txt2img``.

    Texts are deduplicated by ``text_idx`` (the distributed sampler pads with
    duplicates) and ordered by it; images keep the first row of every
    ``image_idx``, ordered by it. ``txt2img[t]`` is the position of text
    ``t``'s image among the unique images.
    """
    text_rows = _first_occurrences(texts['text_idx'].long())
    image_rows = _first_occurrences(images['image_idx'].long())
    gallery = {k: v[text_rows] for k, v in texts.items()}
    gallery.update({k: v[image_rows] for k, v in images.items()})
    image_ids = images['image_idx'].long()[image_rows]
    text_images = texts['image_idx'].long()[text_rows]
    txt2img = torch.searchsorted(image_ids, text_images)
    if not torch.equal(image_ids[txt2img.clamp(max=len(image_ids) - 1)],
                       text_images):
        raise RuntimeError('Some texts have an image_idx without image '
                           'features.')
    gallery['txt2img'] = txt2img
    return gallery


class _RetrievalLoopMixin:
    """Run logic shared by the retrieval val and test loops."""

    stage: str = 'val'
    runner: object
    dataloader: DataLoader
    evaluator: Evaluator
    fp16: bool

    def _setup(self, top_k: int, chunk_size: int, rerank_batch_size: int,
               rerank: bool) -> None:
        if top_k < 1 or chunk_size < 1 or rerank_batch_size < 1:
            raise ValueError('top_k, chunk_size and rerank_batch_size must '
                             'be positive')
        self.top_k = top_k
        self.chunk_size = chunk_size
        self.rerank_batch_size = rerank_batch_size
        self.rerank = rerank
        ks = [k for m in self.evaluator.metrics for k in getattr(m, 'ks', ())]
        self.max_k = max(ks, default=10)
        self._texts: List[Dict[str, Tensor]] = []
        self._images: List[Dict[str, Tensor]] = []
        self._seen_images: Set[int] = set()

    @property
    def _model(self) -> nn.Module:
        model = self.runner.model  # type: ignore[attr-defined]
        return model.module if is_model_wrapper(model) else model

    @property
    def _device(self) -> torch.device:
        param = next(self._model.parameters(), None)
        return param.device if param is not None else torch.device('cpu')

    def _autocast(self) -> ContextManager:
        if self.fp16 and self._device.type == 'cuda':
            return torch.autocast('cuda', dtype=torch.float16)
        return contextlib.nullcontext()

    def _check_model(self) -> None:
        if self.rerank and not hasattr(self._model, 'match_features'):
            raise ValueError(f'{self.stage}_cfg.rerank is True but {type(self._model).__name__} has no '
                             'cross encoders (match_features); set rerank=False for dual encoders')

    def run(self) -> dict:
        """Embed the dataset, rank (and re-rank) both ways and evaluate."""
        stage, runner = self.stage, self.runner
        self._check_model()
        runner.call_hook(f'before_{stage}')  # type: ignore[attr-defined]
        runner.call_hook(f'before_{stage}_epoch')  # type: ignore
        runner.model.eval()  # type: ignore[attr-defined]
        self._texts, self._images, self._seen_images = [], [], set()
        for idx, data_batch in enumerate(self.dataloader):
            self.run_iter(idx, data_batch)
        gallery = build_gallery(gather_features(self._texts),
                                gather_features(self._images))
        self._texts, self._images, self._seen_images = [], [], set()
        records = self._rank(gallery)
        _, world_size = get_dist_info()
        self.evaluator.process(data_samples=records, data_batch=None)
        metrics = self.evaluator.evaluate(len(records) * world_size)
        print_log(
            f'Retrieval {stage}: {len(gallery["image_embeds"])} images, '
            f'{len(gallery["text_embeds"])} texts, top_k={self.top_k}, ' +
            ', '.join(f'{k}: {v:.2f}' for k, v in metrics.items()),
            logger='current')
        runner.call_hook(  # type: ignore[attr-defined]
            f'after_{stage}_epoch', metrics=metrics)
        runner.call_hook(f'after_{stage}')  # type: ignore[attr-defined]
        return metrics

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch: Union[dict, Sequence]) -> None:
        """Run the model on one batch and keep its features on CPU."""
        stage, runner = self.stage, self.runner
        runner.call_hook(  # type: ignore[attr-defined]
            f'before_{stage}_iter', batch_idx=idx, data_batch=data_batch)
        step = getattr(runner.model, f'{stage}_step')  # type: ignore
        with self._autocast():
            outputs = step(data_batch)
        self._keep(outputs)
        runner.call_hook(  # type: ignore[attr-defined]
            f'after_{stage}_iter', batch_idx=idx, data_batch=data_batch,
            outputs=outputs)

    def _keep(self, outputs: Dict[str, Tensor]) -> None:
        """Keep a batch's text features and its not yet seen images' on CPU."""
        text_keys = TEXT_KEYS + (TEXT_MATCH_KEYS if self.rerank else ())
        self._texts.append({k: outputs[k].detach().cpu() for k in text_keys})
        image_ids = outputs['image_idx'].detach().cpu().long()
        rows = [r for r in _first_occurrences(image_ids).tolist()
                if int(image_ids[r]) not in self._seen_images]
        self._seen_images.update(int(image_ids[r]) for r in rows)
        image_keys = IMAGE_KEYS + (IMAGE_MATCH_KEYS if self.rerank else ())
        self._images.append({
            k: outputs[k].detach()[torch.tensor(
                rows, dtype=torch.long, device=outputs[k].device)].cpu()
            for k in image_keys
        })

    @torch.no_grad()
    def _rank(self, gallery: Dict[str, Tensor]) -> List[dict]:
        """Rank this rank's queries: a record per (ranking, direction)."""
        rank, world_size = get_dist_info()
        txt2img = gallery['txt2img']
        records = []
        for direction in ('i2t', 't2i'):
            query_key, cand_key = (('image_embeds', 'text_embeds')
                                   if direction == 'i2t' else
                                   ('text_embeds', 'image_embeds'))
            num_queries = len(gallery[query_key])
            queries = torch.arange(rank, num_queries, world_size)
            sims, indices = chunked_topk(
                gallery[query_key][queries].to(self._device),
                gallery[cand_key].to(self._device),
                max(self.top_k, self.max_k), self.chunk_size)
            sims, indices = sims.cpu(), indices.cpu()
            base = dict(direction=direction, query_indices=queries,
                        txt2img=txt2img)
            records.append(dict(base, ranking='embedding',
                                topk_indices=indices))
            if self.rerank:
                top_k = min(self.top_k, indices.shape[1])
                _, reranked = rerank_topk(
                    indices[:, :top_k], sims[:, :top_k],
                    self._pair_score_fn(gallery, direction),
                    self.rerank_batch_size, query_indices=queries,
                    progress=is_main_process(), desc=f'rerank {direction}')
                records.append(
                    dict(base, ranking='rerank',
                         topk_indices=torch.cat(
                             [reranked, indices[:, top_k:]], dim=1)))
        return records

    def _pair_score_fn(self, gallery: Dict[str, Tensor],
                       direction: str) -> Callable[[Tensor, Tensor], Tensor]:
        """Score (query, candidate) pairs with ``model.match_features``."""
        model, device = self._model, self._device

        def score(query_idx: Tensor, cand_idx: Tensor) -> Tensor:
            image_idx, text_idx = ((query_idx, cand_idx) if direction == 'i2t'
                                   else (cand_idx, query_idx))
            with self._autocast():
                return model.match_features(
                    gallery['image_tokens'][image_idx].to(device),
                    gallery['text_hidden'][text_idx].to(device),
                    gallery['text_mask'][text_idx].to(device))

        return score


@LOOPS.register_module()
class RetrievalValLoop(_RetrievalLoopMixin, ValLoop):
    """Validation loop: retrieval both ways, embedding ranking and re-ranking.

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader or dict): Dataloader of (image, text) pairs.
        evaluator (Evaluator or dict or list): Usually ``RetrievalMetric``.
        top_k (int): Candidates per query re-ranked by the cross encoders.
        chunk_size (int): Queries per similarity chunk.
        rerank_batch_size (int): Pairs per ``match_features`` call.
        rerank (bool): Whether to re-rank; otherwise embedding ranking only.
        fp16 (bool): Autocast to float16 (CUDA only; ignored on CPU).
    """

    stage = 'val'

    def __init__(self, runner, dataloader: Union[DataLoader, Dict],
                 evaluator: Union[Evaluator, Dict, List], top_k: int = 16,
                 chunk_size: int = 1024, rerank_batch_size: int = 256,
                 rerank: bool = True, fp16: bool = False) -> None:
        super().__init__(runner, dataloader, evaluator, fp16=fp16)
        self._setup(top_k, chunk_size, rerank_batch_size, rerank)


@LOOPS.register_module()
class RetrievalTestLoop(_RetrievalLoopMixin, TestLoop):
    """Test loop: :class:`RetrievalValLoop` calling the ``test_*`` hooks."""

    stage = 'test'

    def __init__(self, runner, dataloader: Union[DataLoader, Dict],
                 evaluator: Union[Evaluator, Dict, List], top_k: int = 16,
                 chunk_size: int = 1024, rerank_batch_size: int = 256,
                 rerank: bool = True, fp16: bool = False) -> None:
        super().__init__(runner, dataloader, evaluator, fp16=fp16)
        self._setup(top_k, chunk_size, rerank_batch_size, rerank)
