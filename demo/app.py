"""The web demo's HTTP layer (FastAPI): the page, its JSON API and the gallery images.

    GET  /                 the page (demo/static/index.html, app.js, style.css)
    GET  /api/info         model class, gallery size, whether it can re-rank
    GET  /api/search       ?q=<text>&top_k=10&rerank_k=5 -> ranked images
    POST /api/score        multipart: image (file), text -> matching probability and similarity
    GET  /gallery/{index}  a gallery image

Bad input never answers 500: it answers 400 with ``{"detail": "<why>"}`` (an empty text, a file
that is not an image, an image over the pixel limit, a decompression bomb), 413 for an upload
over the size limit (before its body is read), 503 when the server is saturated
(:mod:`demo.limits`). Uploaded images are decoded in a worker thread pool, never on the event
loop, and the model runs in the server's thread pool, so one slow request stalls no other.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from r2d2lib.io.images import DEFAULT_MAX_PIXELS

from .limits import (
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_MAX_UPLOAD_BYTES,
    DEFAULT_MAX_WAITING,
    ConcurrencyLimitMiddleware,
    UploadLimitMiddleware,
)
from .service import DemoInputError, SearchService, read_upload

STATIC_DIR = Path(__file__).parent / 'static'
#: threads that decode uploads
DECODE_WORKERS = 2


def create_app(service: SearchService, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               max_pixels: Optional[int] = DEFAULT_MAX_PIXELS, max_concurrent: int = DEFAULT_MAX_CONCURRENT,
               max_waiting: int = DEFAULT_MAX_WAITING) -> FastAPI:
    """The FastAPI application serving ``service``.

    Args:
        max_upload_bytes: the largest request body; larger ones are answered 413.
        max_pixels: the largest uploaded image (width * height); larger ones are answered 400.
        max_concurrent, max_waiting: API requests served at once and queued; past both, 503.
    """
    app = FastAPI(title='r2d2lib web demo', docs_url='/api/docs', redoc_url=None)
    decode_pool = ThreadPoolExecutor(max_workers=DECODE_WORKERS, thread_name_prefix='decode')
    app.add_middleware(ConcurrencyLimitMiddleware, max_concurrent=max_concurrent, max_waiting=max_waiting)
    app.add_middleware(UploadLimitMiddleware, max_bytes=max_upload_bytes)  # the outermost: first
    app.router.on_shutdown.append(lambda: decode_pool.shutdown(wait=False, cancel_futures=True))

    @app.get('/api/info')
    def info() -> dict:
        return service.info()

    @app.get('/api/search')
    def search(q: str, top_k: int = 10, rerank_k: int = 0) -> dict:
        try:
            hits = service.search(q, top_k=top_k, rerank_k=rerank_k)
        except DemoInputError as error:
            raise HTTPException(status_code=400, detail=str(error)) from error
        return dict(query=q, top_k=top_k, rerank_k=rerank_k,
                    results=[dict(asdict(h), url=f'/gallery/{h.index}') for h in hits])

    @app.post('/api/score')
    async def score(image: UploadFile = File(...), text: str = Form('')) -> dict:
        data = await image.read()
        try:
            service.check_text(text)  # before spending a decode on a request that must fail
            loop = asyncio.get_running_loop()
            decoded = await loop.run_in_executor(
                decode_pool, partial(read_upload, data, image.filename or 'upload', max_pixels))
            result = await run_in_threadpool(service.score, decoded, text)
        except DemoInputError as error:
            raise HTTPException(status_code=400, detail=str(error)) from error
        return dict(text=text, image=image.filename, **result)

    @app.get('/gallery/{index}')
    def gallery_image(index: int) -> FileResponse:
        if not 0 <= index < len(service.paths):
            raise HTTPException(status_code=404, detail=f'no gallery image {index} '
                                f'(the gallery has {len(service.paths)})')
        return FileResponse(service.paths[index])

    app.mount('/', StaticFiles(directory=STATIC_DIR, html=True), name='static')
    return app
