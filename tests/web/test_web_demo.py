"""The web demo in a real browser: headless Chromium searches and scores through the page.

The server runs as users start it (``python -m demo.server``) on a tiny R2D2 saved with
``save_pretrained`` and the toy test images; the ranking and the score read from the page must
be the inferencer's own. Chromium is required, not optional: CI (.ci/run) installs it.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch

from r2d2lib.apis.inferencer import R2D2Inferencer
from r2d2lib.registry import MODELS

ROOT = Path(__file__).parents[2]
CHROMIUM = '/usr/bin/chromium'
# Without the background-networking flags Chromium floods the (closed) network with requests.
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync']
STARTUP_TIMEOUT = 120  # seconds: importing torch and transformers on a loaded 2-core machine


def wait_until_serving(process: subprocess.Popen, url: str, log_file: Path) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log if it exits or never answers."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f'the demo server exited with status {process.returncode}:\n{log_file.read_text()}')
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f'the demo server did not answer {url} within {STARTUP_TIMEOUT} s:\n{log_file.read_text()}')


@pytest.fixture
def demo_server(tiny_model_cfg, toy_data, free_port, tmp_path):
    """``python -m demo.server`` on a tiny saved R2D2 and the 8 toy test images; yields (url, folder, log)."""
    torch.manual_seed(0)
    model = MODELS.build({**tiny_model_cfg, '_scope_': 'r2d2lib'})
    model_dir = model.save_pretrained(tmp_path / 'model')
    log_file = tmp_path / 'server.log'
    command = [sys.executable, '-m', 'demo.server', '--model', str(model_dir), '--images',
               str(toy_data / 'images'), '--glob', 'test_*', '--port', str(free_port)]
    env = dict(os.environ, HF_HUB_OFFLINE='1', PYTHONUNBUFFERED='1')
    with open(log_file, 'w') as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f'http://127.0.0.1:{free_port}'
    try:
        wait_until_serving(process, f'{url}/api/info', log_file)
        yield url, model_dir, log_file
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def browser():
    """Headless Debian Chromium through Playwright; a missing binary fails (CI installs it)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f'{CHROMIUM} is missing: install it with `apt-get install -y chromium` (.ci/run does)')
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def first_test_caption(toy_data) -> tuple[str, Path]:
    with open(toy_data / 'test.jsonl', encoding='utf-8') as f:
        record = json.loads(f.readline())
    return record['text'], toy_data / record['image_path']


def test_search_and_score_in_the_browser(browser, demo_server, toy_data, tmp_path):
    url, model_dir, log_file = demo_server
    gallery_paths = sorted((toy_data / 'images').glob('test_*'))
    assert len(gallery_paths) == 8
    assert 'gallery ready: 8 images embedded' in log_file.read_text()  # the start-up progress log
    caption, image_path = first_test_caption(toy_data)

    page = browser.new_page(viewport={'width': 1100, 'height': 900})
    page.goto(url)
    page.wait_for_selector('body[data-ready=true]', timeout=30_000)
    assert 'R2D2Model: 8 gallery images' in page.inner_text('#model-info')

    # --- text-to-image search: top 5, the 3 most similar re-ranked by the cross encoders
    page.fill('#query', caption)
    page.fill('#top-k', '5')
    page.fill('#rerank-k', '3')
    page.click('#search-button')
    page.wait_for_selector('#search-status[data-done]', timeout=30_000)
    shown = page.eval_on_selector_all('#results li.result', '''items => items.map(li => ({
        name: li.dataset.name, score: Number(li.dataset.score), rank: Number(li.dataset.rank),
        embedding: Number(li.dataset.embeddingScore),
        rerank: li.dataset.rerankScore === '' ? null : Number(li.dataset.rerankScore),
        src: li.querySelector('img').getAttribute('src'), loaded: li.querySelector('img').naturalWidth}))''')

    inferencer = R2D2Inferencer(str(model_dir), device='cpu')
    gallery = inferencer.build_gallery(images=gallery_paths)
    expected = inferencer.search(caption, gallery, top_k=5, rerank_k=3)
    assert [r['name'] for r in shown] == [Path(r.item).name for r in expected]
    assert [r['rank'] for r in shown] == [1, 2, 3, 4, 5]
    for got, want in zip(shown, expected):
        assert got['score'] == pytest.approx(want.score, abs=1e-5)
        assert got['embedding'] == pytest.approx(want.embedding_score, abs=1e-5)
        assert got['src'] == f'/gallery/{want.index}'
    assert all(r['rerank'] is not None for r in shown[:3]) and all(r['rerank'] is None for r in shown[3:])
    # re-ranked: score = probability + cosine, in descending order
    for r in shown[:3]:
        assert r['score'] == pytest.approx(r['rerank'] + r['embedding'], abs=1e-5)
    assert [r['score'] for r in shown[:3]] == sorted((r['score'] for r in shown[:3]), reverse=True)
    page.wait_for_function("[...document.querySelectorAll('#results img')].every(i => i.complete)")
    assert all(page.eval_on_selector_all('#results img', 'imgs => imgs.map(i => i.naturalWidth === 32)'))

    # --- matching score of an uploaded image with a text
    page.set_input_files('#score-image', str(image_path))
    page.fill('#score-text', caption)
    page.click('#score-button')
    page.wait_for_selector('#score-result[data-done]', timeout=30_000)
    probability = float(page.get_attribute('#score-result', 'data-probability'))
    similarity = float(page.get_attribute('#score-result', 'data-similarity'))
    assert probability == pytest.approx(float(inferencer.score(image_path, caption)[0]), abs=1e-5)
    cosine = inferencer.encode_images(image_path)[0] @ inferencer.encode_texts(caption)[0]
    assert similarity == pytest.approx(float(cosine), abs=1e-5)
    assert page.inner_text('#score-probability') == f'{probability:.4f}'

    screenshot = tmp_path / 'web_demo.png'
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_bad_requests_are_answered_with_the_reason(tiny_model_cfg, toy_data):
    """In-process (no browser): empty query, top_k out of range, non-image upload, empty text, unknown
    gallery index each get 4xx with the reason; gallery images are served as PNG."""
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    from demo.app import create_app
    from demo.service import SearchService, find_images
    torch.manual_seed(0)
    model = MODELS.build({**tiny_model_cfg, '_scope_': 'r2d2lib'})
    paths = find_images(toy_data / 'images', 'test_*')
    service = SearchService(R2D2Inferencer(model), paths, log=lambda message: None)
    client = TestClient(create_app(service))
    empty = client.get('/api/search', params={'q': '  '})
    assert empty.status_code == 400 and 'query is empty' in empty.json()['detail']
    too_many = client.get('/api/search', params={'q': 'x', 'top_k': 1000})
    assert too_many.status_code == 400 and 'top_k must be between 1 and 100' in too_many.json()['detail']
    not_image = client.post('/api/score', files={'image': ('notes.txt', b'hello')}, data={'text': 'x'})
    assert not_image.status_code == 400 and 'notes.txt: not a readable image' in not_image.json()['detail']
    png = io.BytesIO()
    Image.new('RGB', (20, 30), (200, 10, 10)).save(png, format='PNG')
    no_text = client.post('/api/score', files={'image': ('a.png', png.getvalue())}, data={'text': ' '})
    assert no_text.status_code == 400 and 'text is empty' in no_text.json()['detail']
    assert client.get('/gallery/8').status_code == 404
    image = client.get('/gallery/0')
    assert image.headers['content-type'] == 'image/png'
    assert image.content == (toy_data / 'images' / 'test_000000.png').read_bytes()
    # all 8 images ranked when top_k exceeds the gallery
    assert len(client.get('/api/search', params={'q': '红色', 'top_k': 50}).json()['results']) == 8
