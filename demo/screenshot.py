"""Screenshot a running web demo after one search and one score (the picture in docs/deployment.md).

    python -m demo.screenshot --url http://127.0.0.1:8000 --query '左上角有一个红色的大圆形' \
        --image data/toy_shapes/images/test_000000.png --text '...' --out docs/images/web_demo.png

Drives Debian's Chromium headless through Playwright, with the flags that keep it off the network.
"""
from __future__ import annotations

import argparse
from pathlib import Path

CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync']


def take_screenshot(url: str, query: str, image: Path, text: str, out: Path, top_k: int = 8,
                    rerank_k: int = 8, width: int = 1100) -> Path:
    """Search ``query``, score ``image`` with ``text``, save the full page as PNG to ``out``."""
    from playwright.sync_api import sync_playwright
    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(f'{CHROMIUM} is missing: apt-get install -y chromium')
    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={'width': width, 'height': 800})
            page.goto(url)
            page.wait_for_selector('body[data-ready=true]')
            page.fill('#query', query)
            page.fill('#top-k', str(top_k))
            page.fill('#rerank-k', str(rerank_k))
            page.click('#search-button')
            page.wait_for_selector('#search-status[data-done]')
            page.wait_for_function("[...document.querySelectorAll('#results img')].every(i => i.complete)")
            page.set_input_files('#score-image', str(image))
            page.fill('#score-text', text)
            page.click('#score-button')
            page.wait_for_selector('#score-result[data-done]')
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--url', default='http://127.0.0.1:8000')
    parser.add_argument('--query', required=True)
    parser.add_argument('--image', required=True, type=Path)
    parser.add_argument('--text', required=True)
    parser.add_argument('--out', default='docs/images/web_demo.png', type=Path)
    parser.add_argument('--top-k', type=int, default=8)
    parser.add_argument('--rerank-k', type=int, default=8)
    args = parser.parse_args(argv)
    print(take_screenshot(args.url, args.query, args.image, args.text, args.out, args.top_k, args.rerank_k))


if __name__ == '__main__':
    main()
