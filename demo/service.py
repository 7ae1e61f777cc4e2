"""What the web demo computes, without HTTP: a gallery of image files searched by text, and pair scores.

:class:`SearchService` owns an :class:`~r2d2lib.apis.inferencer.R2D2Inferencer` and the gallery
of one image folder, embedded once at start-up. The model is not thread-safe (the fast tokenizer
refuses concurrent use), so every call takes one lock; the web server runs requests in threads.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

from PIL import Image

from r2d2lib.apis.inferencer import Gallery, R2D2Inferencer
from r2d2lib.io.images import DEFAULT_MAX_PIXELS, ImageTooLargeError, UnreadableImageError, open_rgb
from r2d2lib.io.texts import check_texts

#: file endings read as images when a folder is scanned
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.webp', '.bmp', '.gif')
#: the most results one search may ask for
MAX_TOP_K = 100


class DemoInputError(ValueError):
    """A request the demo cannot answer (empty text, unreadable image, ...); the message says why."""


def find_images(folder: Path, pattern: str = '*') -> List[Path]:
    """Image files (by suffix) in ``folder`` whose names match ``pattern``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f'image folder {folder} does not exist')
    paths = sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_SUFFIXES)}) match {pattern!r} in {folder}')
    return paths


def read_upload(data: bytes, name: str = 'upload',
                max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An uploaded file's bytes as an RGB image; anything else raises :class:`DemoInputError`.

    Decoded by :func:`r2d2lib.io.images.open_rgb` (EXIF orientation, 16-bit and float
    modes scaled, alpha composited on white); an image over ``max_pixels`` is refused from its
    header, before it is decoded (a decompression bomb included).
    """
    if not data:
        raise DemoInputError(f'{name}: the uploaded file is empty')
    try:
        return open_rgb(data, max_pixels=max_pixels, where=name)
    except ImageTooLargeError as error:
        raise DemoInputError(f'{name}: the image is too large ({error.reason})') from error
    except UnreadableImageError as error:
        raise DemoInputError(f'{name}: not a readable image ({error.reason})') from error


@dataclass
class SearchHit:
    """One ranked image of a search, as the page shows it."""

    rank: int
    index: int
    name: str
    embedding_score: float
    rerank_score: Optional[float]
    score: float


class SearchService:
    """Text-to-image search over one folder and image-text scoring, for the web demo.

    Args:
        inferencer: the model to use.
        image_paths: the gallery (see :func:`find_images`); embedded here, with a progress bar.
        log: where start-up messages go (default ``print``).
    """

    def __init__(self, inferencer: R2D2Inferencer, image_paths: List[Path],
                 log: Callable[[str], None] = print):
        self.inferencer = inferencer
        self.lock = threading.Lock()
        self.paths = [Path(p) for p in image_paths]
        log(f'embedding {len(self.paths)} gallery images ...')
        start = time.perf_counter()
        self.gallery: Gallery = inferencer.build_gallery(images=self.paths, progress=True)
        log(f'gallery ready: {len(self.paths)} images embedded in {time.perf_counter() - start:.1f} s')

    @property
    def can_rerank(self) -> bool:
        """Whether the model has cross encoders (R2D2) to re-rank and score pairs."""
        return self.inferencer.has_cross_encoders

    def info(self) -> dict:
        model = self.inferencer.model
        return dict(model=type(model).__name__, gallery_size=len(self.paths), can_rerank=self.can_rerank,
                    embed_dim=int(self.gallery.embeddings.shape[1]),
                    image_size=int(model.data_preprocessor.image_size))

    @staticmethod
    def check_text(text: str, what: str = 'text') -> str:
        """``text`` stripped; empty or not encodable (a lone surrogate) raises :class:`DemoInputError`."""
        text = (text or '').strip()
        if not text:
            raise DemoInputError(f'the {what} is empty: type a description'
                                 f'{" of the image" if what == "query" else " to score against the image"}')
        try:
            check_texts([text])
        except (TypeError, ValueError) as error:
            raise DemoInputError(f'the {what} cannot be used: {error}') from error
        return text

    def search(self, query: str, top_k: int = 10, rerank_k: int = 0) -> List[SearchHit]:
        """The ``top_k`` images for ``query``; the ``rerank_k`` most similar re-ranked (0: none)."""
        query = self.check_text(query, 'query')
        if not 1 <= top_k <= MAX_TOP_K:
            raise DemoInputError(f'top_k must be between 1 and {MAX_TOP_K}, got {top_k}')
        if rerank_k < 0:
            raise DemoInputError(f'rerank_k must be 0 (no re-ranking) or positive, got {rerank_k}')
        if rerank_k and not self.can_rerank:
            raise DemoInputError(f'{type(self.inferencer.model).__name__} has no cross encoders: '
                                 'use rerank_k=0')
        top_k = min(top_k, len(self.paths))
        rerank_k = min(rerank_k, len(self.paths))
        with self.lock:
            results = self.inferencer.search(query, self.gallery, top_k=top_k, rerank_k=rerank_k or None,
                                             query_kind='text', progress=False)
        return [SearchHit(rank, r.index, self.paths[r.index].name, r.embedding_score, r.rerank_score, r.score)
                for rank, r in enumerate(results, start=1)]

    def score(self, image: Image.Image, text: str) -> dict:
        """Matching probability (cross encoders; None for a dual encoder) and cosine similarity."""
        text = self.check_text(text)
        with self.lock:
            image_embed = self.inferencer.encode_images([image], progress=False)[0]
            text_embed = self.inferencer.encode_texts([text], progress=False)[0]
            probability = (float(self.inferencer.score([image], [text], progress=False)[0])
                           if self.can_rerank else None)
        return dict(probability=probability, similarity=float(image_embed @ text_embed))
