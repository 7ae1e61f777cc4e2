"""Use a trained model: embed, score, search and classify with one object, :class:`R2D2Inferencer`.

The dual towers give L2-normalised embeddings (``encode_images`` / ``encode_texts``) that
retrieve from a gallery by inner product (``build_gallery`` + ``search``); R2D2's two cross
encoders give the matching probability of image-text pairs (``score``) and re-rank the top
``rerank_k`` candidates of a search as the retrieval loop does (probability + similarity,
:func:`~r2d2lib.evaluation.ranking.rerank_topk`). ``classify`` is zero-shot classification
with prompt ensembling over Chinese templates.

Example::

    from r2d2lib import R2D2Inferencer
    inferencer = R2D2Inferencer('work_dirs/demo/model')  # anything load_model takes
    gallery = inferencer.build_gallery(images=['a.png', 'b.png'])
    for result in inferencer.search('红色的大圆形', gallery, top_k=5, rerank_k=5):
        print(result.item, result.score)
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from PIL import Image
from torch import Tensor, nn
from tqdm import tqdm

from r2d2lib.evaluation.ranking import chunked_topk, rerank_topk
from r2d2lib.io.checkpoint import load_weights
from r2d2lib.io.images import UnreadableImageError, open_rgb

from .loading import load_model

PathLike = Union[str, os.PathLike]
ImageInput = Union[Image.Image, PathLike]
ModelSource = Union[nn.Module, PathLike]

#: Zero-shot prompt templates (Chinese, CLIP-style ``{}`` = the class name); their text
#: embeddings are averaged per class (prompt ensembling).
DEFAULT_TEMPLATES: Tuple[str, ...] = (
    '{}',
    '一张{}的照片。',
    '{}的照片。',
    '一张{}的图片。',
    '这是一张{}的图片。',
    '图片里有{}。',
)

GALLERY_KINDS = ('images', 'texts')
#: File endings that make a str query look like an image path (a warning, see ``query_kind``).
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.gif', '.tif', '.tiff')


@dataclass
class Gallery:
    """Items to search in and their L2-normalised embeddings.

    ``kind`` is ``'images'`` (items: PIL images or paths) or ``'texts'`` (items: strings);
    row ``i`` of ``embeddings`` [N, D] belongs to ``items[i]``.
    """

    kind: str
    embeddings: Tensor
    items: List

    def __post_init__(self):
        if self.kind not in GALLERY_KINDS:
            raise ValueError(f'Gallery.kind must be one of {GALLERY_KINDS}, got {self.kind!r}')
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != len(self.items):
            raise ValueError(f'Gallery has {len(self.items)} items but embeddings of shape '
                             f'{tuple(self.embeddings.shape)}')

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class SearchResult:
    """One ranked search result.

    ``index`` is the item's row in the gallery (or index); ``embedding_score`` its cosine
    similarity to the query; ``rerank_score`` the cross encoders' matching probability when
    the result was re-ranked, else None; ``score`` what the results are ordered by:
    probability + similarity for re-ranked results (as the retrieval loop), else the similarity.
    """

    item: object
    index: int
    embedding_score: float
    rerank_score: Optional[float]
    score: float


@dataclass
class ClassScore:
    """One zero-shot label of an image: class ``label`` (``index`` in the class list), its softmax
    ``probability`` over the classes at the model's temperature, and the cosine ``similarity``."""

    label: str
    index: int
    probability: float
    similarity: float


def load_image(image: ImageInput) -> Image.Image:
    """A PIL image, or the image at a path, as RGB by :func:`r2d2lib.io.images.open_rgb` (EXIF orientation,
    16-bit and float scaled, alpha on white, the pixel limit); the error names the path."""
    if not isinstance(image, (Image.Image, str, os.PathLike)):
        raise TypeError(f'an image must be a PIL image or a path, got {type(image).__name__}')
    try:
        return open_rgb(image)
    except UnreadableImageError as error:
        raise OSError(str(error)) from error


def _as_list(values, single: Callable[[object], bool]) -> list:
    """``values`` as a list: a single value (``single(values)``) becomes a one-item list."""
    if single(values):
        return [values]
    return list(values)


def _is_single_image(value) -> bool:
    return isinstance(value, (Image.Image, str, os.PathLike))


def _is_single_text(value) -> bool:
    return isinstance(value, str)


def _check_texts(texts: Sequence) -> None:
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f'texts[{i}] is a {type(text).__name__}, not a str')


def _batches(num: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, num, batch_size):
        yield slice(start, min(start + batch_size, num))


def build_model_from(source: ModelSource, checkpoint: Optional[PathLike] = None,
                     allow_pickle: bool = False) -> nn.Module:
    """The model behind ``source`` (see :class:`R2D2Inferencer`), in eval mode: a built model as is
    (with ``checkpoint`` loaded into it strictly), anything else through :func:`~r2d2lib.apis.load_model`."""
    if isinstance(source, nn.Module):
        if checkpoint is not None:
            load_weights(source, checkpoint, allow_pickle=allow_pickle)
        return source.eval()
    return load_model(source, checkpoint, allow_pickle=allow_pickle)


class R2D2Inferencer:
    """Embed, match, search and classify with a trained R2D2 (or dual-encoder) model.

    Args:
        model: an already built model; a model-zoo name (:func:`~r2d2lib.apis.list_models`,
            loaded with its released weights); a folder written by ``save_pretrained`` or a
            Hub repo id; or a config file (``.py``) when ``checkpoint`` is given.
        checkpoint: a training checkpoint (mmengine ``.pth`` or ``.safetensors``) loaded strictly
            into the model of the config ``model`` (or into the given model).
        device: where to run (default: the model's device; CUDA if available for loaded models).
        batch_size: images, texts or pairs per forward pass.
        progress: show progress bars on long loops (per call overridable).
        allow_pickle: allow a checkpoint that needs a full unpickle (runs code from the file).

    Every output is on the CPU, float32. The model runs under ``torch.no_grad`` in eval mode.
    """

    def __init__(self, model: ModelSource, checkpoint: Optional[PathLike] = None, *,
                 device: Optional[Union[str, torch.device]] = None, batch_size: int = 32,
                 progress: bool = False, allow_pickle: bool = False):
        if batch_size < 1:
            raise ValueError(f'batch_size must be positive, got {batch_size}')
        self.model = build_model_from(model, checkpoint, allow_pickle)
        if device is None and not isinstance(model, nn.Module):
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        if device is not None:
            self.model.to(device)
        self.batch_size = batch_size
        self.progress = progress

    # ----------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        param = next(self.model.parameters(), None)
        return param.device if param is not None else torch.device('cpu')

    @property
    def has_cross_encoders(self) -> bool:
        """Whether the model can score pairs (R2D2) or only embed (dual encoders)."""
        return hasattr(self.model, 'match_features')

    @property
    def tokenizer(self):
        """The model's Hugging Face tokenizer."""
        return self.model.data_preprocessor.tokenizer

    def _check_cross_encoders(self, what: str) -> None:
        if not self.has_cross_encoders:
            raise TypeError(f'{what} needs cross encoders, but {type(self.model).__name__} is a dual encoder '
                            '(no match_features); use embedding similarity (search without rerank_k)')

    def _bar(self, total: int, desc: str, progress: Optional[bool]):
        show = self.progress if progress is None else progress
        return tqdm(total=total, desc=desc, disable=not show or total == 0)

    # ----------------------------------------------------------------- features
    def _pixels(self, images: Sequence[ImageInput]) -> Tensor:
        return self.model.preprocess([load_image(im) for im in images]).to(self.device)

    def _tokens(self, texts: Sequence[str]) -> dict:
        _check_texts(texts)
        return {k: v.to(self.device) for k, v in self.model.tokenize(list(texts)).items()}

    def _image_tokens(self, images: Sequence[ImageInput]) -> Tensor:
        return self.model.image_encoder(self._pixels(images))

    def _text_hidden(self, texts: Sequence[str]) -> Tuple[Tensor, Tensor]:
        tokens = self._tokens(texts)
        mask = tokens['attention_mask']
        return self.model.text_encoder(tokens['input_ids'], mask), mask

    @torch.no_grad()
    def encode_images(self, images: Union[ImageInput, Sequence[ImageInput]],
                      batch_size: Optional[int] = None, progress: Optional[bool] = None) -> Tensor:
        """L2-normalised image embeddings [N, D] of PIL images or image paths (any sizes)."""
        images = _as_list(images, _is_single_image)
        batch_size = batch_size or self.batch_size
        out = []
        with self._bar(len(images), 'encode images', progress) as bar:
            for part in _batches(len(images), batch_size):
                out.append(self.model.encode_image(self._pixels(images[part])).float().cpu())
                bar.update(part.stop - part.start)
        return torch.cat(out) if out else torch.empty(0, self.embed_dim)

    @torch.no_grad()
    def encode_texts(self, texts: Union[str, Sequence[str]], batch_size: Optional[int] = None,
                     progress: Optional[bool] = None) -> Tensor:
        """L2-normalised text embeddings [N, D]."""
        texts = _as_list(texts, _is_single_text)
        batch_size = batch_size or self.batch_size
        out = []
        with self._bar(len(texts), 'encode texts', progress) as bar:
            for part in _batches(len(texts), batch_size):
                tokens = self._tokens(texts[part])
                embeds = self.model.encode_text(tokens['input_ids'], tokens['attention_mask'])
                out.append(embeds.float().cpu())
                bar.update(part.stop - part.start)
        return torch.cat(out) if out else torch.empty(0, self.embed_dim)

    @property
    def embed_dim(self) -> int:
        """Width D of the retrieval embeddings."""
        return self.model.vision_proj.out_features

    # ----------------------------------------------------------------- matching
    @torch.no_grad()
    def score(self, images: Union[ImageInput, Sequence[ImageInput]], texts: Union[str, Sequence[str]],
              batch_size: Optional[int] = None, progress: Optional[bool] = None) -> Tensor:
        """Matching probabilities [N] of image-text pairs by the cross encoders (mean of both heads).

        Pairs are the i-th image with the i-th text; one image with N texts, or N images
        with one text, are broadcast. Raises TypeError for a dual encoder.
        """
        self._check_cross_encoders('score()')
        images = _as_list(images, _is_single_image)
        texts = _as_list(texts, _is_single_text)
        num = max(len(images), len(texts))
        if len(images) not in (1, num) or len(texts) not in (1, num):
            raise ValueError(f'score() pairs the i-th image with the i-th text: got {len(images)} images and '
                             f'{len(texts)} texts (equal counts, or one of either)')
        if num == 0:
            return torch.empty(0)
        batch_size = batch_size or self.batch_size
        one_image = self._image_tokens(images) if len(images) == 1 else None
        one_text = self._text_hidden(texts) if len(texts) == 1 else None
        out = []
        with self._bar(num, 'score pairs', progress) as bar:
            for part in _batches(num, batch_size):
                size = part.stop - part.start
                tokens = (one_image.expand(size, -1, -1) if one_image is not None
                          else self._image_tokens(images[part]))
                if one_text is not None:
                    hidden, mask = one_text[0].expand(size, -1, -1), one_text[1].expand(size, -1)
                else:
                    hidden, mask = self._text_hidden(texts[part])
                out.append(self.model.match_features(tokens, hidden, mask).float().cpu())
                bar.update(size)
        return torch.cat(out)

    # ----------------------------------------------------------------- captioning
    def caption(self, images: Union[ImageInput, Sequence[ImageInput]], batch_size: Optional[int] = None,
                progress: Optional[bool] = None, **options) -> List[str]:
        """One caption per image with a captioner (``ImageCaptioner``): ``beams``, ``max_length``,
        ``min_length``, ``sample``, ``top_p``, ``temperature``, ``repetition_penalty``; see
        :func:`r2d2lib.apis.captioning.caption_images`."""
        from .captioning import caption_images
        return caption_images(self.model, images, batch_size=batch_size or self.batch_size,
                              progress=self.progress if progress is None else progress, **options)

    # ----------------------------------------------------------------- text-to-image
    def generate(self, texts: Union[str, Sequence[str]], num_images: int = 1, steps: Optional[int] = None,
                 guidance: Optional[float] = None, seed: Optional[int] = None,
                 progress: Optional[bool] = None, **options) -> List[Image.Image]:
        """``num_images`` PIL images per text with a text-to-image model (``TextToImageDiffusion``):
        ``steps`` (>= 1), ``guidance`` (>= 0), ``seed``, ``sampler``, ``image_size``; see
        :func:`r2d2lib.apis.generation.generate_images`."""
        from .generation import generate_images
        return generate_images(self.model, texts, num_images=num_images, steps=steps, guidance=guidance,
                               seed=seed, batch_size=self.batch_size,
                               progress=self.progress if progress is None else progress, **options)

    # ----------------------------------------------------------------- search
    def build_gallery(self, images: Optional[Sequence[ImageInput]] = None,
                      texts: Optional[Sequence[str]] = None, progress: Optional[bool] = None) -> Gallery:
        """A :class:`Gallery` of images (PIL or paths) or of texts: give exactly one of the two."""
        if (images is None) == (texts is None):
            raise ValueError('build_gallery takes images=... or texts=..., exactly one of them')
        if images is not None:
            items = _as_list(images, _is_single_image)
            return Gallery('images', self.encode_images(items, progress=progress), items)
        items = _as_list(texts, _is_single_text)
        return Gallery('texts', self.encode_texts(items, progress=progress), items)

    @staticmethod
    def query_kind(query) -> str:
        """``'text'`` for a str, ``'image'`` for a PIL image or a ``pathlib.Path`` / os.PathLike."""
        if isinstance(query, str):
            if query.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(query):
                warnings.warn(f'the query {query!r} is searched as a text; to search with that image pass '
                              "pathlib.Path(query) or query_kind='image'", stacklevel=3)
            return 'text'
        if isinstance(query, (Image.Image, os.PathLike)):
            return 'image'
        raise TypeError(f'a query is a str (text), a PIL image or a pathlib.Path (image); got '
                        f'{type(query).__name__}')

    def encode_query(self, query, kind: Optional[str] = None) -> Tensor:
        """The query's embedding [D]; ``kind`` ``'text'`` / ``'image'`` (default: :meth:`query_kind`)."""
        kind = kind or self.query_kind(query)
        if kind == 'text':
            return self.encode_texts([query], progress=False)[0]
        if kind == 'image':
            return self.encode_images([query], progress=False)[0]
        raise ValueError(f"query kind must be 'text' or 'image', got {kind!r}")

    def search(self, query, gallery: Gallery, top_k: int = 10, rerank_k: Optional[int] = None,
               query_kind: Optional[str] = None, progress: Optional[bool] = None) -> List[SearchResult]:
        """The ``top_k`` gallery items closest to ``query`` (a text, or an image: PIL or Path).

        With ``rerank_k``, the ``rerank_k`` most similar items are re-ranked by the cross
        encoders (probability + similarity, as the retrieval loop); those come first, then the
        rest of the ``top_k`` in embedding order. Re-ranking needs a text query over images or
        an image query over texts, and an R2D2 model.
        """
        if top_k < 1:
            raise ValueError(f'top_k must be positive, got {top_k}')
        kind = query_kind or self.query_kind(query)
        query_features = None
        if rerank_k and self.has_cross_encoders and kind in ('text', 'image'):
            # one pass of the query's tower: its embedding ranks, its tokens / hidden states re-rank
            query_embed, query_features = self._query_features(query, kind)
        else:
            query_embed = self.encode_query(query, kind)
        depth = max(top_k, rerank_k or 0)
        sims, indices = chunked_topk(query_embed[None], gallery.embeddings, depth)
        sims, indices = sims[0], indices[0]
        candidates = [gallery.items[i] for i in indices.tolist()]
        results = self.rerank(query, candidates, sims, indices=indices, rerank_k=rerank_k,
                              gallery_kind=gallery.kind, query_kind=kind, progress=progress,
                              query_features=query_features)
        return results[:top_k]

    @torch.no_grad()
    def _query_features(self, query, kind: str) -> Tuple[Tensor, tuple]:
        """The query's embedding [D] (as :meth:`encode_query`) and its features for ``match_features``."""
        if kind == 'text':
            tokens = self._tokens([query])
            hidden, embeds = self.model.text_features(tokens['input_ids'], tokens['attention_mask'])
            return embeds[0].float().cpu(), (hidden, tokens['attention_mask'])
        image_tokens, embeds = self.model.image_features(self._pixels([query]))
        return embeds[0].float().cpu(), (image_tokens,)

    def _pair_matcher(self, query, query_kind: str, gallery_kind: str,
                      query_features: Optional[tuple] = None) -> Callable[[list], Tensor]:
        """``candidates -> [P] matching probabilities`` of the query with each candidate item.

        ``query_features`` (from :meth:`_query_features`): the query's tower is not run again.
        """
        if (query_kind, gallery_kind) not in (('text', 'images'), ('image', 'texts')):
            raise ValueError(f're-ranking scores image-text pairs: a {query_kind} query over a gallery of '
                             f'{gallery_kind} cannot be re-ranked (leave rerank_k=None)')
        self._check_cross_encoders('re-ranking')
        if query_kind == 'text':
            hidden, mask = query_features or self._text_hidden([query])

            def match(items: list) -> Tensor:
                n = len(items)
                return self.model.match_features(self._image_tokens(items), hidden.expand(n, -1, -1),
                                                 mask.expand(n, -1))
        else:
            tokens = query_features[0] if query_features else self._image_tokens([query])

            def match(items: list) -> Tensor:
                cand_hidden, cand_mask = self._text_hidden(items)
                return self.model.match_features(tokens.expand(len(items), -1, -1), cand_hidden, cand_mask)
        return match

    @torch.no_grad()
    def rerank(self, query, candidates: Sequence, embedding_scores: Tensor, indices: Optional[Tensor] = None,
               rerank_k: Optional[int] = None, gallery_kind: Optional[str] = None,
               query_kind: Optional[str] = None, progress: Optional[bool] = None,
               query_features: Optional[tuple] = None) -> List[SearchResult]:
        """Results for candidates already ranked by embedding similarity (e.g. from a faiss index).

        ``candidates`` are the items (paths or texts) in descending ``embedding_scores``
        order, ``indices`` their ids (default 0..k-1). The first ``rerank_k`` are re-ranked
        with :func:`~r2d2lib.evaluation.ranking.rerank_topk` (None: no re-ranking);
        ``gallery_kind`` defaults to the opposite of the query's modality. ``query_features``:
        the query's token features, as :meth:`search` passes them (its tower already ran); by
        default the query is encoded here.
        """
        query_kind = query_kind or self.query_kind(query)
        gallery_kind = gallery_kind or ('images' if query_kind == 'text' else 'texts')
        sims = torch.as_tensor(embedding_scores).float().reshape(-1).cpu()
        indices = (torch.arange(len(candidates)) if indices is None
                   else torch.as_tensor(indices).long().reshape(-1).cpu())
        if not len(candidates) == sims.numel() == indices.numel():
            raise ValueError(f'{len(candidates)} candidates, {sims.numel()} scores and {indices.numel()} '
                             'indices: one of each per candidate')
        results = [SearchResult(item, int(i), float(s), None, float(s))
                   for item, i, s in zip(candidates, indices.tolist(), sims.tolist())]
        if not rerank_k:
            return results
        if rerank_k < 0:
            raise ValueError(f'rerank_k must be positive or None, got {rerank_k}')
        depth = min(rerank_k, len(candidates))
        match = self._pair_matcher(query, query_kind, gallery_kind, query_features)
        probabilities = torch.empty(depth)

        def pair_score_fn(_query_idx: Tensor, cand_pos: Tensor) -> Tensor:
            positions = cand_pos.tolist()
            probs = match([candidates[p] for p in positions]).float().cpu()
            probabilities[cand_pos] = probs
            return probs

        show = self.progress if progress is None else progress
        final, order = rerank_topk(torch.arange(depth)[None], sims[None, :depth], pair_score_fn,
                                   self.batch_size, progress=show, desc='rerank')
        reranked = [SearchResult(candidates[p], int(indices[p]), float(sims[p]), float(probabilities[p]),
                                 float(f)) for p, f in zip(order[0].tolist(), final[0].tolist())]
        return reranked + results[depth:]

    # ----------------------------------------------------------------- zero-shot classification
    @torch.no_grad()
    def class_embeddings(self, class_names: Sequence[str],
                         templates: Optional[Sequence[str]] = None) -> Tensor:
        """[C, D] class embeddings: per class, the mean of its L2-normalised template embeddings,
        re-normalised (prompt ensembling). Templates hold ``{}`` where the class name goes."""
        templates = list(DEFAULT_TEMPLATES if templates is None else templates)
        class_names = _as_list(class_names, _is_single_text)
        if not class_names or not templates:
            raise ValueError('classify needs at least one class name and one template')
        _check_texts(class_names)
        for template in templates:
            if not isinstance(template, str) or '{}' not in template:
                raise ValueError(f'template {template!r} has no "{{}}" for the class name')
        prompts = [t.format(name) for name in class_names for t in templates]
        embeds = self.encode_texts(prompts, progress=False).view(len(class_names), len(templates), -1)
        return torch.nn.functional.normalize(embeds.mean(dim=1), dim=-1)

    @torch.no_grad()
    def classify(self, images: Union[ImageInput, Sequence[ImageInput]], class_names: Sequence[str],
                 templates: Optional[Sequence[str]] = None, top_k: int = 5,
                 progress: Optional[bool] = None) -> List[List[ClassScore]]:
        """Zero-shot labels of each image: its ``top_k`` classes, most probable first.

        Probabilities are the softmax over classes of similarity / the model's temperature.
        """
        class_names = _as_list(class_names, _is_single_text)
        classes = self.class_embeddings(class_names, templates)
        image_embeds = self.encode_images(images, progress=progress)
        sims = image_embeds @ classes.t()
        temperature = float(self.model.temperature.tau)
        probs = (sims / temperature).softmax(dim=-1)
        k = min(top_k, len(class_names))
        top_probs, top_idx = probs.topk(k, dim=-1)
        return [[ClassScore(class_names[c], c, float(p), float(sims[row, c]))
                 for p, c in zip(top_probs[row].tolist(), top_idx[row].tolist())]
                for row in range(len(image_embeds))]
