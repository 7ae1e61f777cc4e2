"""The web demo under bad input, in-process: 400 / 413 / 503 with the reason, never a 500.

Fails on the demo of before: a 74-byte PNG header claiming 10^10 pixels answered 500 (Pillow's
DecompressionBombError uncaught), a 144-megapixel PNG was decoded in full, uploads had no size
limit, an RGBA upload was scored on its hidden colours, and nothing bounded concurrency.
"""
import asyncio
import io

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from demo.app import create_app
from demo.limits import ConcurrencyLimitMiddleware, UploadLimitMiddleware
from demo.service import SearchService, find_images
from r2d2lib.apis.inferencer import R2D2Inferencer
from r2d2lib.registry import MODELS
from tests.datasets.hostile import HIDDEN_GREEN, png_header_bomb, png_zeros


@pytest.fixture
def service(tiny_model_cfg, toy_data):
    torch.manual_seed(0)
    model = MODELS.build({**tiny_model_cfg, '_scope_': 'r2d2lib'})
    return SearchService(R2D2Inferencer(model), find_images(toy_data / 'images', 'test_*'),
                         log=lambda message: None)


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format='PNG')
    return out.getvalue()


def score(client, data: bytes, name: str = 'upload.png', text: str = '红色的圆形'):
    return client.post('/api/score', files={'image': (name, data)}, data={'text': text})


@pytest.mark.filterwarnings('ignore::PIL.Image.DecompressionBombWarning')
def test_images_over_the_pixel_limit_are_400_not_500(service):
    client = TestClient(create_app(service, max_pixels=1_000_000), raise_server_exceptions=False)
    bomb = score(client, png_header_bomb(), 'bomb.png')  # 10^10 pixels: Pillow's own error before
    assert bomb.status_code == 400, bomb.text
    assert 'bomb.png: the image is too large' in bomb.json()['detail']
    big = score(client, png_zeros(2000, 1000), 'big.png')  # 2 megapixels, a few KB
    assert big.status_code == 400
    detail = big.json()['detail']
    assert '2000x1000 = 2,000,000 pixels is more than the limit of max_pixels=1,000,000' in detail
    small = score(client, png(Image.new('RGB', (1000, 1000), (10, 200, 10))))
    assert small.status_code == 200 and 0 <= small.json()['probability'] <= 1


def test_uploads_over_the_size_limit_are_413(service):
    client = TestClient(create_app(service, max_upload_bytes=50_000), raise_server_exceptions=False)
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    data = png(Image.fromarray(noise))  # about 120 KB: noise does not compress
    assert len(data) > 50_000
    answer = score(client, data)
    assert answer.status_code == 413 and 'more than the limit of 50,000 bytes' in answer.json()['detail']
    assert score(client, png(Image.new('RGB', (20, 20)))).status_code == 200


def test_uploads_are_decoded_like_every_other_image(service):
    """A transparent PNG scores as the white image it shows, not as the green hidden under it."""
    client = TestClient(create_app(service))
    rgba = Image.new('RGBA', (32, 32), HIDDEN_GREEN + (0, ))
    got = score(client, png(rgba)).json()
    white = score(client, png(Image.new('RGB', (32, 32), (255, 255, 255)))).json()
    green = score(client, png(Image.new('RGB', (32, 32), HIDDEN_GREEN))).json()
    assert got['similarity'] == pytest.approx(white['similarity'], abs=1e-6)
    assert abs(got['similarity'] - green['similarity']) > 1e-4
    grey16 = score(client, png(Image.new('I;16', (32, 32), 32896))).json()
    grey8 = score(client, png(Image.new('RGB', (32, 32), (128, 128, 128)))).json()
    assert grey16['similarity'] == pytest.approx(grey8['similarity'], abs=1e-6)


def test_bad_text_and_broken_images_are_400(service):
    client = TestClient(create_app(service), raise_server_exceptions=False)
    good = png(Image.new('RGB', (20, 20)))
    assert score(client, good[:len(good) // 2], 'cut.png').status_code == 400
    assert score(client, b'', 'empty.png').status_code == 400
    assert score(client, good, text='\u3000 \t').status_code == 400
    search = client.get('/api/search', params={'q': '[SEP][MASK]', 'top_k': 3})
    assert search.status_code == 200 and len(search.json()['results']) == 3


def run_asgi(app, scope, body_chunks):
    """Run an ASGI app on one request; returns (status, body, number of chunks it received)."""
    chunks = list(body_chunks)
    received = []
    sent = []

    async def receive():
        if chunks:
            chunk = chunks.pop(0)
            received.append(chunk)
            return dict(type='http.request', body=chunk, more_body=bool(chunks))
        return dict(type='http.disconnect')

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m['status'] for m in sent if m['type'] == 'http.response.start')
    body = b''.join(m.get('body', b'') for m in sent if m['type'] == 'http.response.body')
    return status, body, len(received)


async def echo_length(scope, receive, send):
    """An app that reads the whole body and answers 200 with its length."""
    size = 0
    while True:
        message = await receive()
        if message['type'] == 'http.disconnect':
            raise ConnectionError('client disconnected')
        size += len(message.get('body', b''))
        if not message.get('more_body'):
            break
    await send(dict(type='http.response.start', status=200, headers=[]))
    await send(dict(type='http.response.body', body=str(size).encode()))


def test_upload_limit_acts_before_the_body_and_cuts_a_streamed_one():
    app = UploadLimitMiddleware(echo_length, max_bytes=1000)
    scope = dict(type='http', method='POST', path='/api/score', headers=[(b'content-length', b'5000')])
    status, body, chunks_read = run_asgi(app, scope, [b'x' * 1000] * 5)
    assert (status, chunks_read) == (413, 0) and b'5,000 bytes' in body  # nothing read
    chunked = dict(type='http', method='POST', path='/api/score', headers=[])
    status, body, chunks_read = run_asgi(app, chunked, [b'x' * 400] * 10)
    assert (status, chunks_read) == (413, 3)  # stopped at the chunk that passed 1000 bytes
    assert run_asgi(app, chunked, [b'x' * 400, b'x' * 400])[:2] == (200, b'800')


def test_concurrency_is_bounded_with_503_past_the_queue():
    release = asyncio.Event

    async def main():
        gate = release()
        active = dict(now=0, most=0)

        async def slow(scope, receive, send):
            active['now'] += 1
            active['most'] = max(active['most'], active['now'])
            await gate.wait()
            active['now'] -= 1
            await send(dict(type='http.response.start', status=200, headers=[]))
            await send(dict(type='http.response.body', body=b'ok'))

        app = ConcurrencyLimitMiddleware(slow, max_concurrent=2, max_waiting=1)
        statuses = []

        async def request():
            sent = []

            async def send(message):
                sent.append(message)
            await app(dict(type='http', path='/api/search'), None, send)
            statuses.append(sent[0]['status'])

        tasks = [asyncio.create_task(request()) for _ in range(5)]
        for _ in range(20):
            await asyncio.sleep(0)
        assert (app.active, app.waiting) == (2, 1)
        gate.set()
        await asyncio.gather(*tasks)
        return sorted(statuses), active['most']

    statuses, most = asyncio.run(main())
    assert statuses == [200, 200, 200, 503, 503] and most == 2
