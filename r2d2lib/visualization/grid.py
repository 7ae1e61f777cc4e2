"""A picture grid of ranked results: one cell per result (an image, or a text drawn on a card) with a
label under it, and an optional query cell first."""
from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from typing import List, Optional, Sequence, Union

from PIL import Image, ImageDraw, ImageFont

Cell = Union[Image.Image, str]

#: Fonts with Chinese glyphs, looked for in this order (Debian / Ubuntu / macOS / Windows paths).
CJK_FONT_PATHS = (
    '/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc',
    '/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc',
    '/usr/share/fonts/truetype/wqy/wqy-microhei.ttc',
    '/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc',
    '/usr/share/fonts/truetype/arphic/uming.ttc',
    '/System/Library/Fonts/PingFang.ttc',
    'C:/Windows/Fonts/msyh.ttc',
)
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)


def find_cjk_font(path: Optional[str] = None) -> Optional[str]:
    """A font file that can draw Chinese: ``path``, ``$R2D2LIB_FONT``, a known system font, or the first
    that fontconfig lists for Chinese (``fc-list :lang=zh``); else None."""
    for candidate in (path, os.environ.get('R2D2LIB_FONT'), *CJK_FONT_PATHS):
        if candidate and os.path.isfile(candidate):
            return candidate
    if shutil.which('fc-list'):
        try:
            listed = subprocess.run(['fc-list', ':lang=zh', 'file'], capture_output=True, text=True,
                                    timeout=30, check=False).stdout
        except (OSError, subprocess.SubprocessError):
            listed = ''
        files = sorted(line.strip().rstrip(':') for line in listed.splitlines() if line.strip())
        if files:
            return files[0]
    return None


def _font(size: int, cjk_font: Optional[str]):
    if cjk_font:
        return ImageFont.truetype(cjk_font, size)
    return ImageFont.load_default(size=size)


def drawable(text: str, cjk_font: Optional[str]) -> str:
    """``text`` as the font can draw it: without a CJK font non-ASCII characters become ``\\uXXXX``."""
    if cjk_font:
        return text
    return text.encode('ascii', 'backslashreplace').decode('ascii')


def _text_card(text: str, size: int, cjk_font: Optional[str]) -> Image.Image:
    """A square white card with ``text`` wrapped on it."""
    card = Image.new('RGB', (size, size), (245, 245, 235))
    text = drawable(text, cjk_font)
    chars_per_line = max(4, size // (12 if cjk_font else 7))
    lines = textwrap.wrap(text, chars_per_line)[: max(1, size // 14)]
    ImageDraw.Draw(card).multiline_text((4, 4), '\n'.join(lines), fill=INK, font=_font(11, cjk_font))
    return card


def _fit(cell: Cell, size: int, cjk_font: Optional[str]) -> Image.Image:
    if isinstance(cell, str):
        return _text_card(cell, size, cjk_font)
    image = cell.convert('RGB')
    scale = size / max(image.size)
    resample = Image.NEAREST if scale >= 2 else Image.BICUBIC  # keep small toy images crisp
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), resample)
    canvas = Image.new('RGB', (size, size), BACKGROUND)
    canvas.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return canvas


def result_grid(cells: Sequence[Cell], labels: Sequence[str], columns: int = 5, cell_size: int = 160,
                query: Optional[Cell] = None, query_label: str = 'query',
                cjk_font: Optional[str] = None) -> Image.Image:
    """A grid image: ``query`` (if given) then every cell, each with its label underneath.

    Cells are images (fitted into ``cell_size`` squares) or texts (drawn on cards). Labels
    and texts need a CJK font for Chinese (``cjk_font``, else :func:`find_cjk_font`); without
    one Chinese characters are written as ``\\uXXXX`` escapes.
    """
    if len(cells) != len(labels):
        raise ValueError(f'{len(cells)} cells but {len(labels)} labels')
    if columns < 1 or cell_size < 16:
        raise ValueError('columns must be >= 1 and cell_size >= 16')
    cjk_font = find_cjk_font(cjk_font)
    items: List[tuple] = ([(query, query_label)] if query is not None else []) + list(zip(cells, labels))
    if not items:
        raise ValueError('nothing to draw: no cells and no query')
    label_height, pad = 30, 6
    columns = min(columns, len(items))
    rows = -(-len(items) // columns)
    size = (columns * (cell_size + pad) + pad, rows * (cell_size + label_height + pad) + pad)
    grid = Image.new('RGB', size, BACKGROUND)
    draw = ImageDraw.Draw(grid)
    font = _font(11, cjk_font)
    for n, (cell, label) in enumerate(items):
        x = pad + (n % columns) * (cell_size + pad)
        y = pad + (n // columns) * (cell_size + label_height + pad)
        grid.paste(_fit(cell, cell_size, cjk_font), (x, y))
        if query is not None and n == 0:
            frame = (x - 3, y - 3, x + cell_size + 2, y + cell_size + 2)
            draw.rectangle(frame, outline=(200, 40, 40), width=3)
        lines = textwrap.wrap(drawable(label, cjk_font), max(4, cell_size // (12 if cjk_font else 7)))[:2]
        draw.multiline_text((x, y + cell_size + 2), '\n'.join(lines), fill=INK, font=font)
    return grid
