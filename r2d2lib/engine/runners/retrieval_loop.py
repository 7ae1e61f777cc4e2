"""Val and test loops for image-text retrieval with cross-encoder re-ranking, built for large test sets.

1. **Gallery.** The unique images and texts and their positive pairs are read
   from the dataset's pair records (:class:`~r2d2lib.evaluation.gallery.RetrievalGallery`):
   several captions per image, several images per text (MUGE), gallery-only images.
2. **Embedding, once each.** Images and texts are dealt round-robin over the
   ranks; each rank runs the image tower over its images (loaded by the
   dataset's own pipeline) and the text tower over its texts
   (``data_preprocessor.tokenize``). The L2-normalised embeddings are
   all-gathered (``[N, D]``); token features stay on the rank that computed them.
3. **Ranking.** Each rank queries with its own images (i2t; gallery-only images
   are no queries) and its own texts (t2i): similarities are computed
   ``chunk_size`` queries at a time on the model's device and only the top
   ``max(top_k, max ks)`` candidates are kept.
4. **Re-ranking.** A rank fetches the token features of its queries' top-k
   candidates from the ranks that hold them (point-to-point), scores the
   (query, candidate) pairs with ``model.match_features`` in batches, and sorts
   by matching probability + similarity. Memory grows with queries x k, never
   with queries x gallery.
5. **Metric.** One record per (ranking, direction) and rank goes to the
   evaluator (``RetrievalMetric``), which sums hit counts over ranks.

Model interface: ``image_features(pixels) -> (tokens, embeds)``,
``text_features(ids, mask) -> (hidden, embeds)``,
``match_features(image_tokens, text_hidden, text_mask) -> [P]`` (re-ranking
only) and ``data_preprocessor.normalize`` / ``tokenize``: ``DualEncoderModel`` and
``R2D2Model`` have them.
"""
import time
from typing import Callable, Dict, List, Sequence, Tuple, Union

import torch
from mmengine.dist import get_dist_info, is_main_process
from mmengine.evaluator import Evaluator
from mmengine.logging import print_log
from mmengine.runner import TestLoop, ValLoop
from torch import Tensor
from torch.utils.data import DataLoader

from r2d2lib.evaluation.gallery import RetrievalGallery
from r2d2lib.evaluation.ranking import DIRECTIONS, chunked_topk, rerank_topk
from r2d2lib.registry import LOOPS

from .eval_base import EvalLoopMixin, chunks, progress
from .sharding import fetch_rows, gather_shards, shard_indices

Features = Dict[str, Tensor]


class _RetrievalLoopMixin(EvalLoopMixin):
    """Run logic shared by the retrieval val and test loops."""

    evaluator: Evaluator

    def _setup(self, top_k: int, chunk_size: int, rerank_batch_size: int, rerank: bool,
               text_batch_size: Union[int, None]) -> None:
        if top_k < 1 or chunk_size < 1 or rerank_batch_size < 1:
            raise ValueError('top_k, chunk_size and rerank_batch_size must be positive')
        self.top_k, self.chunk_size = top_k, chunk_size
        self.rerank_batch_size, self.rerank = rerank_batch_size, rerank
        self.text_batch_size = text_batch_size
        metrics = self.evaluator.metrics
        self.max_k = max((k for m in metrics for k in getattr(m, 'ks', ())), default=10)
        wanted = {d for m in metrics for d in getattr(m, 'directions', DIRECTIONS)}
        self.directions = tuple(d for d in DIRECTIONS if d in wanted)

    # ----------------------------------------------------------------- run
    def run(self) -> dict:
        """Embed the gallery once, rank (and re-rank) every direction, evaluate."""
        self.require('image_features', 'text_features', reason='embeddings of the gallery')
        if self.rerank:
            if not callable(getattr(self.model, 'match_features', None)):
                raise ValueError(f'{self.stage}_cfg.rerank is True but {type(self.model).__name__} has no '
                                 'cross encoders (match_features); set rerank=False for dual encoders')
        return self.run_with_hooks(self._evaluate)

    def _evaluate(self) -> Dict[str, float]:
        rank, world_size = get_dist_info()
        gallery = RetrievalGallery.from_dataset(self.dataloader.dataset)
        if gallery.num_images == 0 or gallery.num_texts == 0:
            raise ValueError(f'the {self.stage} dataset has {gallery.num_images} images and '
                             f'{gallery.num_texts} texts: nothing to retrieve')
        start = time.perf_counter()
        images = self._embed_images(gallery)
        texts = self._embed_texts(gallery)
        embed_seconds = time.perf_counter() - start
        all_images = gather_shards(images.pop('embeds'), gallery.num_images)
        all_texts = gather_shards(texts.pop('embeds'), gallery.num_texts)
        start = time.perf_counter()
        records = []
        for direction in self.directions:
            records += self._rank(direction, gallery, all_images, all_texts, images, texts)
        rank_seconds = time.perf_counter() - start
        self.evaluator.process(data_samples=records, data_batch=None)
        metrics = self.evaluator.evaluate(len(records) * world_size)
        gallery_only = int((gallery.positives.texts_per_image() == 0).sum())
        print_log(f'Retrieval {self.stage}: {gallery.num_images} images ({gallery_only} gallery-only), '
                  f'{gallery.num_texts} texts, {len(gallery.positives)} positive pairs, '
                  f'directions={"+".join(self.directions)}, top_k={self.top_k if self.rerank else "-"}, '
                  f'{world_size} rank(s); embedding {embed_seconds:.1f} s, ranking '
                  f'{rank_seconds:.1f} s', logger='current')
        return metrics

    # ----------------------------------------------------------------- embedding
    def _embed_images(self, gallery: RetrievalGallery) -> Features:
        """This rank's images through the image tower: ``embeds`` and, to re-rank, ``tokens``."""
        rank, world_size = get_dist_info()
        mine = shard_indices(gallery.num_images, rank, world_size)
        parts: Dict[str, List[Tensor]] = {'embeds': [], 'tokens': []}
        for batch in self.image_batches(self.dataloader.dataset, gallery.image_records[mine].tolist(),
                                        desc=f'{self.stage}: embed images'):
            with self.autocast():
                tokens, embeds = self.model.image_features(self.normalize_images(batch))
            parts['embeds'].append(embeds.float().cpu())
            if self.rerank:
                parts['tokens'].append(tokens.cpu())
        return self._concat(parts)

    def _embed_texts(self, gallery: RetrievalGallery) -> Features:
        """This rank's texts through the text tower: ``embeds`` and, to re-rank, ``hidden``, ``mask``."""
        rank, world_size = get_dist_info()
        mine = shard_indices(gallery.num_texts, rank, world_size).tolist()
        texts = [gallery.texts[i] for i in mine]
        size = self.text_batch_size or self.batch_size
        parts: Dict[str, List[Tensor]] = {'embeds': [], 'hidden': [], 'mask': []}
        for batch in progress(chunks(texts, size), desc=f'{self.stage}: embed texts',
                              total=-(-len(texts) // size)):
            tokens = self.model.data_preprocessor.tokenize(batch)
            with self.autocast():
                hidden, embeds = self.model.text_features(tokens['input_ids'], tokens['attention_mask'])
            parts['embeds'].append(embeds.float().cpu())
            if self.rerank:
                parts['hidden'].append(hidden.cpu())
                parts['mask'].append(tokens['attention_mask'].cpu())
        return self._concat(parts)

    @staticmethod
    def _concat(parts: Dict[str, List[Tensor]]) -> Features:
        """Concatenate batches (padding token dims to the longest); empty lists give ``[0]`` tensors."""
        out = {}
        for key, pieces in parts.items():
            if not pieces:
                out[key] = torch.zeros(0)
                continue
            if pieces[0].dim() >= 2:
                length = max(p.shape[1] for p in pieces)
                pieces = [torch.nn.functional.pad(p, [0, 0] * (p.dim() - 2) + [0, length - p.shape[1]])
                          for p in pieces]
            out[key] = torch.cat(pieces)
        return out

    # ----------------------------------------------------------------- ranking
    def _rank(self, direction: str, gallery: RetrievalGallery, all_images: Tensor, all_texts: Tensor,
              images: Features, texts: Features) -> List[dict]:
        """Rank this rank's queries of one direction: an ``embedding`` and maybe a ``rerank`` record."""
        rank, world_size = get_dist_info()
        if direction == 'i2t':
            local = shard_indices(gallery.num_images, rank, world_size)
            keep = gallery.positives.texts_per_image()[local] > 0  # gallery-only images are no queries
            rows, queries, candidates = keep.nonzero().flatten(), local[keep], all_texts
        else:
            queries = shard_indices(gallery.num_texts, rank, world_size)
            rows, candidates = torch.arange(len(queries)), all_images
        query_embeds = (all_images if direction == 'i2t' else all_texts)[queries]
        depth = max(self.top_k, self.max_k) if self.rerank else self.max_k
        sims, indices = chunked_topk(query_embeds.to(self.device), candidates.to(self.device), depth,
                                     self.chunk_size)
        sims, indices = sims.cpu(), indices.cpu()
        base = dict(direction=direction, query_indices=queries, positives=gallery.positives)
        records = [dict(base, ranking='embedding', topk_indices=indices)]
        if self.rerank:
            top_k = min(self.top_k, indices.shape[1])
            wanted = torch.unique(indices[:, :top_k])
            if direction == 'i2t':
                fetched = fetch_rows(dict(hidden=texts['hidden'], mask=texts['mask']), wanted,
                                     gallery.num_texts)
                query_feats = dict(tokens=images['tokens'][rows])
            else:
                fetched = fetch_rows(dict(tokens=images['tokens']), wanted, gallery.num_images)
                query_feats = dict(hidden=texts['hidden'], mask=texts['mask'])
            positions = torch.searchsorted(wanted, indices[:, :top_k].contiguous())
            _, reranked = rerank_topk(positions, sims[:, :top_k],
                                      self._pair_score_fn(direction, query_feats, fetched),
                                      self.rerank_batch_size, progress=is_main_process(),
                                      desc=f'{self.stage}: rerank {direction}')
            reranked = wanted[reranked]
            records.append(dict(base, ranking='rerank',
                                topk_indices=torch.cat([reranked, indices[:, top_k:]], dim=1)))
        return records

    def _pair_score_fn(self, direction: str, queries: Features,
                       candidates: Features) -> Callable[[Tensor, Tensor], Tensor]:
        """Matching probability of (query row, fetched candidate row) pairs by ``match_features``."""
        model, device = self.model, self.device
        images, texts = (queries, candidates) if direction == 'i2t' else (candidates, queries)

        def score(query_rows: Tensor, cand_rows: Tensor) -> Tensor:
            image_rows, text_rows = ((query_rows, cand_rows) if direction == 'i2t' else
                                     (cand_rows, query_rows))
            with self.autocast():
                return model.match_features(images['tokens'][image_rows].to(device),
                                            texts['hidden'][text_rows].to(device),
                                            texts['mask'][text_rows].to(device))

        return score


def _retrieval_args(top_k: int = 16, chunk_size: int = 1024, rerank_batch_size: int = 256,
                    rerank: bool = True, text_batch_size: Union[int, None] = None,
                    fp16: bool = False) -> Tuple:
    return top_k, chunk_size, rerank_batch_size, rerank, text_batch_size, fp16


def _loop_args(loop: str, kwargs: dict) -> Tuple:
    """The retrieval loops' arguments with their defaults; an unknown key names the loop."""
    try:
        return _retrieval_args(**kwargs)
    except TypeError as err:
        raise TypeError(f'{loop}: {err} (arguments: top_k, chunk_size, rerank_batch_size, rerank, '
                        'text_batch_size, fp16)') from None


@LOOPS.register_module()
class RetrievalValLoop(_RetrievalLoopMixin, ValLoop):
    """Validation loop of image-text retrieval: gallery embedded once, chunked top-k, top-k re-ranked.

    Both directions, or the metric's ``directions``; see the module docstring for the algorithm.

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader or dict): Dataloader of the pair records; the loop reads its
            dataset's records and uses its ``batch_size`` and ``num_workers`` for the images.
        evaluator (Evaluator or dict or list): Usually ``RetrievalMetric``.
        top_k (int): Candidates per query re-ranked by the cross encoders.
        chunk_size (int): Queries per similarity chunk.
        rerank_batch_size (int): Pairs per ``match_features`` call.
        rerank (bool): Whether to re-rank; otherwise embedding ranking only (dual encoders).
        text_batch_size (int, optional): Texts per text-tower call (the dataloader's batch size).
        fp16 (bool): Autocast to float16 (CUDA only; ignored on CPU).
    """

    stage = 'val'

    def __init__(self, runner, dataloader: Union[DataLoader, Dict],
                 evaluator: Union[Evaluator, Dict, List], **kwargs) -> None:
        top_k, chunk_size, rerank_batch_size, rerank, text_batch_size, fp16 = _loop_args(
            'RetrievalValLoop', kwargs)
        super().__init__(runner, dataloader, evaluator, fp16=fp16)
        self._setup(top_k, chunk_size, rerank_batch_size, rerank, text_batch_size)


@LOOPS.register_module()
class RetrievalTestLoop(_RetrievalLoopMixin, TestLoop):
    """Test loop: :class:`RetrievalValLoop` calling the ``test_*`` hooks (same arguments)."""

    stage = 'test'

    def __init__(self, runner, dataloader: Union[DataLoader, Dict],
                 evaluator: Union[Evaluator, Dict, List], **kwargs) -> None:
        top_k, chunk_size, rerank_batch_size, rerank, text_batch_size, fp16 = _loop_args(
            'RetrievalTestLoop', kwargs)
        super().__init__(runner, dataloader, evaluator, fp16=fp16)
        self._setup(top_k, chunk_size, rerank_batch_size, rerank, text_batch_size)


__all__: Sequence[str] = ['RetrievalValLoop', 'RetrievalTestLoop']
