"""A load test of the web demo on 127.0.0.1: hostile uploads cannot stall normal searches.

The server runs as users start it (``python -m demo.server``) with a 1 MiB upload limit. While
an attacker process (tests/web/attacker.py) sends, one after another, decompression-bomb
headers (10^10 pixels in 74 bytes), a 144-megapixel PNG of 140 KB, a request claiming a 200 MB
body (never sent) and a 2 MB upload, the median and the mean latency of normal searches stay
within 2x of the unloaded server's, measured in alternating unloaded / loaded rounds. Every
hostile request gets its 4xx; none gets a 500. Bounded loops: the test stops by itself.

On the demo of before this fails: the bomb header answered 500, and the 144-megapixel PNG was
decoded inside the async handler, blocking every other request for seconds (mean 2x exceeded).
"""
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch

from r2d2lib.registry import MODELS
from tests.datasets.hostile import png_zeros

ROOT = Path(__file__).parents[2]
STARTUP_TIMEOUT = 120
ROUNDS = 3  # unloaded, loaded, unloaded, loaded, ...
SEARCHES_PER_ROUND = 15
MAX_ATTACKS = 400  # the attacker's hard bound
QUERY = dict(q='左上角有一个红色的大圆形', top_k=5, rerank_k=0)


@pytest.fixture(scope='module')
def big_png():
    return png_zeros(12_000, 12_000)  # 144 megapixels, about 140 KB


@pytest.fixture
def server(tiny_model_cfg, toy_data, free_port, tmp_path):
    torch.manual_seed(0)
    model_dir = MODELS.build({**tiny_model_cfg, '_scope_': 'r2d2lib'}).save_pretrained(tmp_path / 'model')
    log_file = tmp_path / 'server.log'
    command = [sys.executable, '-m', 'demo.server', '--model', str(model_dir), '--images',
               str(toy_data / 'images'), '--glob', 'test_*', '--port', str(free_port), '--max-upload-mb', '1']
    env = dict(os.environ, HF_HUB_OFFLINE='1', PYTHONUNBUFFERED='1')
    with open(log_file, 'w') as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f'http://127.0.0.1:{free_port}'
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f'the demo server exited:\n{log_file.read_text()}')
            try:
                if httpx.get(f'{url}/api/info', timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f'the demo server did not start:\n{log_file.read_text()}')
            time.sleep(0.5)
        yield url, free_port, log_file
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def attack_while(url: str, port: int, big_png: Path, tmp_path: Path, measure):
    """Run ``measure()`` while tests/web/attacker.py attacks; returns (its result, statuses by kind)."""
    stop = tmp_path / 'stop'
    stop.unlink(missing_ok=True)
    attacker = subprocess.Popen([sys.executable, '-m', 'tests.web.attacker', url, str(port),
                                 str(big_png), str(stop), str(MAX_ATTACKS)],
                                cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    try:
        first = attacker.stdout.readline()
        assert first.strip() == 'ready', first + attacker.stdout.read()
        result = measure()
        stop.touch()
        out, _ = attacker.communicate(timeout=60)
    finally:
        if attacker.poll() is None:
            attacker.kill()
            attacker.wait()
    return result, json.loads(out.strip().splitlines()[-1])


def timed_searches(client: httpx.Client, url: str) -> list:
    times = []
    for _ in range(SEARCHES_PER_ROUND):
        start = time.perf_counter()
        answer = client.get(f'{url}/api/search', params=QUERY)
        times.append(time.perf_counter() - start)
        assert answer.status_code == 200 and len(answer.json()['results']) == 5
    return times


def test_hostile_uploads_do_not_stall_searches(server, big_png, tmp_path):
    url, port, log_file = server
    big_file = tmp_path / 'big.png'
    big_file.write_bytes(big_png)
    unloaded, loaded = [], []
    statuses = {'bomb': [], 'big': [], 'claim': [], 'oversized': []}
    with httpx.Client(timeout=60) as client:
        timed_searches(client, url)  # warm up
        for _ in range(ROUNDS):
            unloaded += timed_searches(client, url)
            times, sent = attack_while(url, port, big_file, tmp_path, lambda: timed_searches(client, url))
            loaded += times
            for kind, codes in sent.items():
                statuses[kind] += codes
    assert sum(len(s) for s in statuses.values()) >= 8, statuses  # the attacks did interleave
    assert set(statuses['bomb']) == {400} and set(statuses['big']) <= {400}, statuses
    assert set(statuses['claim']) <= {413}, statuses
    assert set(statuses['oversized']) <= {413, 'RemoteProtocolError', 'WriteError', 'ReadError'}, statuses
    assert 413 in statuses['oversized'] + statuses['claim']
    for name, measure in [('median', statistics.median), ('mean', statistics.mean)]:
        # the mean catches a few searches stalled for seconds, which the median would not
        without, under = measure(unloaded), measure(loaded)
        assert under <= 2 * without, (f'searches took {under * 1000:.1f} ms ({name}) under attack, '
                                       f'{without * 1000:.1f} ms without')
    assert 'Traceback' not in log_file.read_text()
