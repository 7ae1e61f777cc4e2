"""A PNG of test images beside their captions (tools/caption_demo.py writes one per run).

Chinese needs a CJK font: :func:`r2d2lib.visualization.grid.find_cjk_font` looks in the usual places,
then asks fontconfig (``fc-list :lang=zh``). Without one, :func:`write_caption_grid` still writes the
PNG, each image labelled with its index only, writes the captions beside it as ``<png stem>.txt``
(index, caption) and says which package to install (``make system-deps`` installs
``fonts-wqy-microhei`` as root).
"""
from __future__ import annotations

import os
import os.path as osp
from typing import List, Optional, Sequence

from PIL import Image, ImageDraw, ImageFont

from r2d2lib.visualization.grid import find_cjk_font

FONT_PACKAGE = 'fonts-wqy-microhei'
THUMB = 96  # image side in the PNG
ROW = THUMB + 8
FONT_SIZE = 15


def write_caption_grid(out: str, images: Sequence[str], lines: Sequence[Sequence[str]],
                       font_path: Optional[str] = '') -> List[str]:
    """Write ``out`` (PNG): one row per image, its index, the image and its ``lines`` of text.

    ``font_path``: a CJK font (default: :func:`find_cjk_font`); None or none found: the rows show the
    index only and the text goes to ``<out stem>.txt``. Returns the files written.
    """
    if len(images) != len(lines):
        raise ValueError(f'{len(images)} images but {len(lines)} caption rows')
    if not images:
        raise ValueError('no images to draw')
    if font_path == '':
        font_path = find_cjk_font()
    font = ImageFont.truetype(font_path, FONT_SIZE) if font_path else None
    label_font = ImageFont.load_default()
    text_width = int(max(font.getlength(text) for texts in lines for text in texts)) + 12 if font else 0
    sheet = Image.new('RGB', (40 + THUMB + 12 + text_width, ROW * len(images) + 8), 'white')
    draw = ImageDraw.Draw(sheet)
    for row, (path, texts) in enumerate(zip(images, lines)):
        top = 8 + row * ROW
        draw.text((6, top + THUMB // 2 - 6), f'#{row}', fill='black', font=label_font)
        with Image.open(path) as image:
            sheet.paste(image.convert('RGB').resize((THUMB, THUMB), Image.NEAREST), (40, top))
        if font:
            step = THUMB // max(len(texts), 1)
            for k, text in enumerate(texts):
                draw.text((40 + THUMB + 12, top + k * step + 4), text, fill='black', font=font)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    sheet.save(out)
    written = [out]
    if font is None:
        listing = osp.splitext(out)[0] + '.txt'
        with open(listing, 'w', encoding='utf-8') as f:
            for row, texts in enumerate(lines):
                f.write(f'#{row}\t' + '\t'.join(texts) + '\n')
        written.append(listing)
        print(f'no font with Chinese glyphs is installed (fc-list :lang=zh lists none): {out} labels the '
              f'images #0..#{len(images) - 1} and {listing} lists their captions; install one with '
              f'apt-get install {FONT_PACKAGE} (make system-deps does, as root)')
    return written
