"""The web demo's HTTP layer (FastAPI): the page, its JSON API and the gallery images.

    GET  /                 the page (demo/static/index.html, app.js, style.css)
    GET  /api/info         model class, gallery size, whether it can re-rank
    GET  /api/search       ?q=<text>&top_k=10&rerank_k=5 -> ranked images
    POST /api/score        multipart: image (file), text -> matching probability and similarity
    GET  /gallery/{index}  a gallery image

Bad input answers 400 with ``{"detail": "<why>"}``.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from .service import DemoInputError, SearchService, read_upload

STATIC_DIR = Path(__file__).parent / 'static'


def create_app(service: SearchService) -> FastAPI:
    """The FastAPI application serving ``service``."""
    app = FastAPI(title='r2d2lib web demo', docs_url='/api/docs', redoc_url=None)

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
            result = service.score(read_upload(data, image.filename or 'upload'), text)
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
