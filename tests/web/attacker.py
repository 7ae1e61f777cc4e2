"""The load test's attacker, a process of its own (so it takes no GIL from the timed searches).

    python -m tests.web.attacker <url> <port> <big.png> <stop file> <max attacks>

Sends, in turn and until ``<stop file>`` exists or ``<max attacks>`` are sent: a PNG header
claiming 10^10 pixels, the PNG file ``<big.png>``, a request claiming a 200 MB body (never sent)
and a 2 MB upload. Prints ``ready`` after the first attack and, at the end, one JSON line:
``{kind: [status or transport error name, ...]}``. Imports nothing but the standard library,
httpx and tests/pngs.py.
"""
import json
import os
import socket
import sys
import time

import httpx

from tests.pngs import png_header_bomb

BOUNDARY = 'r2d2libloadtest'
HEADERS = {'content-type': f'multipart/form-data; boundary={BOUNDARY}'}
KINDS = ('bomb', 'big', 'claim', 'oversized')


def multipart(name: str, data: bytes) -> bytes:
    """A multipart/form-data body with the file ``image`` and the field ``text``."""
    return (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="text"\r\n\r\n红色\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            'Content-Type: image/png\r\n\r\n').encode() + data + f'\r\n--{BOUNDARY}--\r\n'.encode()


def claim_huge_body(port: int) -> int:
    """POST with ``Content-Length: 200 MB`` and no body; the status the server answers at once."""
    with socket.create_connection(('127.0.0.1', port), timeout=10) as sock:
        sock.sendall(b'POST /api/score HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                     b'Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 209715200\r\n\r\n')
        head = sock.recv(4096).decode('latin-1')
    return int(head.split()[1])


def main(url: str, port: int, big_png: str, stop_file: str, max_attacks: int) -> None:
    with open(big_png, 'rb') as f:
        big = f.read()
    bodies = dict(bomb=multipart('bomb.png', png_header_bomb()), big=multipart('big.png', big),
                  oversized=multipart('oversized.png', b'\x00' * (2 << 20)))
    statuses = {kind: [] for kind in KINDS}
    with httpx.Client(timeout=30) as client:
        for number in range(max_attacks):
            if os.path.exists(stop_file):
                break
            kind = KINDS[number % len(KINDS)]
            if kind == 'claim':
                statuses[kind].append(claim_huge_body(port))
            else:
                try:
                    answer = client.post(f'{url}/api/score', content=bodies[kind], headers=HEADERS)
                    statuses[kind].append(answer.status_code)
                except httpx.TransportError as error:  # the 2 MB upload may be cut off: the 413 came first
                    statuses[kind].append(type(error).__name__)
            if number == 0:
                print('ready', flush=True)
            time.sleep(0.01)
    print(json.dumps(statuses), flush=True)


if __name__ == '__main__':
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]))
