"""What keeps the web demo answering under hostile input: an upload size limit and a request bound.

Both are plain ASGI middleware, so they act before FastAPI parses anything:

* :class:`UploadLimitMiddleware`: a request body larger than ``max_bytes`` is answered 413. A
  ``Content-Length`` over the limit is refused before one byte of the body is read; a body
  streamed without one (chunked) is cut as soon as it passes the limit.
* :class:`ConcurrencyLimitMiddleware`: at most ``max_concurrent`` API requests are served at
  once; up to ``max_waiting`` more wait their turn; beyond that the answer is 503 at once, so a
  flood of requests queues neither memory nor threads without bound.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable, Dict

Scope = Dict[str, Any]
Message = Dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: default largest upload (bytes): 10 MiB
DEFAULT_MAX_UPLOAD_BYTES = 10 << 20
#: default number of API requests served at once, and waiting
DEFAULT_MAX_CONCURRENT = 4
DEFAULT_MAX_WAITING = 32


async def send_json(send: Send, status: int, detail: str) -> None:
    """Answer ``{"detail": detail}`` with ``status`` and close the connection."""
    body = json.dumps(dict(detail=detail)).encode('utf-8')
    await send(dict(type='http.response.start', status=status,
                    headers=[(b'content-type', b'application/json'),
                             (b'content-length', str(len(body)).encode()), (b'connection', b'close')]))
    await send(dict(type='http.response.body', body=body))


def _header(scope: Scope, name: bytes) -> Any:
    for key, value in scope.get('headers') or ():
        if key.lower() == name:
            return value
    return None


class UploadLimitMiddleware:
    """Answer 413 to request bodies over ``max_bytes`` (see the module doc)."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError(f'max_bytes must be positive, got {max_bytes}')
        self.app = app
        self.max_bytes = int(max_bytes)

    def too_large(self, size: str) -> str:
        return (f'the upload is too large: {size}, more than the limit of {self.max_bytes:,} bytes '
                f'({self.max_bytes / (1 << 20):.1f} MiB)')

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope['type'] != 'http':
            await self.app(scope, receive, send)
            return
        length = _header(scope, b'content-length')
        if length is not None:
            text = length.decode('latin-1').strip()
            if not text.isdigit():
                await send_json(send, 400, f'invalid Content-Length {text[:40]!r}')
                return
            if int(text) > self.max_bytes:
                await send_json(send, 413, self.too_large(f'{int(text):,} bytes'))
                return
        state = dict(received=0, exceeded=False, started=False)

        async def limited_receive() -> Message:
            if state['exceeded']:
                return dict(type='http.disconnect')
            message = await receive()
            if message['type'] == 'http.request':
                state['received'] += len(message.get('body', b''))
                if state['received'] > self.max_bytes:
                    state['exceeded'] = True
                    return dict(type='http.disconnect')
            return message

        async def guarded_send(message: Message) -> None:
            if state['exceeded']:
                return  # the app's answer to a cut body is replaced by the 413 below
            state['started'] = state['started'] or message['type'] == 'http.response.start'
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state['exceeded']:
                raise
        if state['exceeded'] and not state['started']:
            await send_json(send, 413, self.too_large(f'more than {self.max_bytes:,} bytes streamed'))


class ConcurrencyLimitMiddleware:
    """Serve at most ``max_concurrent`` requests under ``prefix`` at once; 503 past ``max_waiting``."""

    def __init__(self, app: ASGIApp, max_concurrent: int = DEFAULT_MAX_CONCURRENT,
                 max_waiting: int = DEFAULT_MAX_WAITING, prefix: str = '/api/') -> None:
        if max_concurrent <= 0 or max_waiting < 0:
            raise ValueError(f'max_concurrent must be positive and max_waiting not negative, got '
                             f'{max_concurrent} and {max_waiting}')
        self.app = app
        self.max_concurrent = int(max_concurrent)
        self.max_waiting = int(max_waiting)
        self.prefix = prefix
        self.active = 0
        self.waiting = 0
        self._semaphore: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope['type'] != 'http' or not scope.get('path', '').startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        if self._semaphore is None:  # created inside the server's event loop
            self._semaphore = asyncio.Semaphore(self.max_concurrent)
        if self._semaphore.locked() and self.waiting >= self.max_waiting:
            await send_json(send, 503, f'the server is busy ({self.active} requests in progress, '
                                       f'{self.waiting} waiting): try again shortly')
            return
        self.waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
            self._semaphore.release()
