"""A hostile corpus, generated at test time: every kind of bad or tricky input r2d2lib must survive.

:func:`write_hostile_corpus` writes images and a retrieval annotation (``train.jsonl``) whose
expected outcome is known exactly; :data:`EXPECTED_RGB` gives the pixel every converted image
must show, computed by hand (not by the code under test).
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Dict

import numpy as np
from PIL import Image

from tests.pngs import png_header_bomb, png_zeros  # noqa: F401 (re-exported to the tests)

SIZE = 16  # side of the small images

# name -> the (R, G, B) of pixel (0, 0) after conversion, by hand
EXPECTED_RGB = {
    'grey16.png': (128, 128, 128),        # I;16 value 32896 = 128 * 257 (today: 255, white)
    'transparent.png': (255, 255, 255),   # alpha 0 over hidden green -> white (today: green)
    'half_alpha.png': (127, 127, 255),    # blue at alpha 128 over white: 255 - 128 * 255 / 255 ...
    'palette_transparent.png': (255, 255, 255),  # palette index 1 is transparent (today: its red)
    'float.tiff': (64, 64, 64),           # F value 0.25 -> 63.75 -> 64 (today: 0)
    'int32.tiff': (128, 128, 128),        # I value 2**30 in a 32-bit TIFF -> 127.5 -> 128 (today: 255)
    'cmyk.jpg': (255, 255, 255),          # CMYK (0, 0, 0, 0) is white
    'plain.png': (200, 30, 30),
}
HIDDEN_GREEN = (0, 255, 0)
LONG_CAPTION = '红' * 10_000
SPECIAL_CAPTION = '一个红色的[SEP]圆形[MASK]'
# 1-based lines of train.jsonl holding an empty and a whitespace-only caption
EMPTY_LINES = (3, 4)


def rotated_png() -> bytes:
    """A 32 x 16 PNG, left half red and right half blue, with EXIF orientation 6.

    Orientation 6: rotate 90 degrees clockwise to display, so the picture is 16 wide and 32 tall
    with red on top and blue below.
    """
    pixels = np.zeros((16, 32, 3), np.uint8)
    pixels[:, :16] = (255, 0, 0)
    pixels[:, 16:] = (0, 0, 255)
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    image.save(out, 'PNG', exif=exif)
    return out.getvalue()


def write_images(folder: Path) -> Dict[str, Path]:
    """Write every hostile image into ``folder``; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    s = SIZE
    paths: Dict[str, Path] = {}

    def save(name: str, image: Image.Image, fmt: str, **kwargs) -> None:
        image.save(folder / name, fmt, **kwargs)
        paths[name] = folder / name

    save('grey16.png', Image.fromarray(np.full((s, s), 32896, np.uint16)), 'PNG')
    rgba = np.zeros((s, s, 4), np.uint8)
    rgba[..., :3] = HIDDEN_GREEN  # fully transparent everywhere
    save('transparent.png', Image.fromarray(rgba, 'RGBA'), 'PNG')
    half = np.zeros((s, s, 4), np.uint8)
    half[...] = (0, 0, 255, 128)
    save('half_alpha.png', Image.fromarray(half, 'RGBA'), 'PNG')
    palette = Image.new('P', (s, s), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    save('palette_transparent.png', palette, 'PNG', transparency=1)
    save('float.tiff', Image.fromarray(np.full((s, s), 0.25, np.float32), 'F'), 'TIFF')
    save('int32.tiff', Image.fromarray(np.full((s, s), 2 ** 30, np.int32), 'I'), 'TIFF')
    save('cmyk.jpg', Image.new('CMYK', (s, s), (0, 0, 0, 0)), 'JPEG', quality=100)
    save('plain.png', Image.new('RGB', (s, s), (200, 30, 30)), 'PNG')
    (folder / 'rotated.png').write_bytes(rotated_png())
    paths['rotated.png'] = folder / 'rotated.png'
    (folder / 'bomb_header.png').write_bytes(png_header_bomb())
    paths['bomb_header.png'] = folder / 'bomb_header.png'
    # 300 x 300 = 90,000 pixels: over the tests' max_pixels=50,000, far under the default
    (folder / 'big.png').write_bytes(png_zeros(300, 300))
    paths['big.png'] = folder / 'big.png'
    good = (folder / 'plain.png').read_bytes()
    (folder / 'truncated.png').write_bytes(good[:len(good) // 2])
    paths['truncated.png'] = folder / 'truncated.png'
    (folder / 'not_image.jpg').write_text('this is not an image\n')
    paths['not_image.jpg'] = folder / 'not_image.jpg'
    return paths


def write_hostile_corpus(root: Path) -> dict:
    """Images under ``root/images`` and ``root/train.jsonl``; returns what each line should give.

    Lines: 1 plain, 2 grey16, 3 empty caption, 4 whitespace caption, 5 the 10,000-character
    caption, 6 special tokens typed in, 7 missing image, 8 truncated, 9 not an image,
    10 big (over max_pixels=50,000), 11 bomb header, 12 rotated, 13 transparent,
    14 palette_transparent, 15 float, 16 int32, 17 cmyk, 18 half_alpha.
    """
    paths = write_images(Path(root) / 'images')
    rows = [('plain.png', '一个红色的方形'), ('grey16.png', '一个灰色的方形'),
            ('plain.png', ''), ('grey16.png', ' \t\u3000 '),
            ('plain.png', LONG_CAPTION), ('plain.png', SPECIAL_CAPTION),
            ('missing.png', '不存在的图片'), ('truncated.png', '截断的图片'), ('not_image.jpg', '不是图片'),
            ('big.png', '很大的图片'), ('bomb_header.png', '炸弹'), ('rotated.png', '上红下蓝'),
            ('transparent.png', '透明'), ('palette_transparent.png', '调色板透明'),
            ('float.tiff', '浮点'), ('int32.tiff', '三十二位'), ('cmyk.jpg', '印刷色'),
            ('half_alpha.png', '半透明')]
    ann = Path(root) / 'train.jsonl'
    with open(ann, 'w', encoding='utf-8') as f:
        for name, text in rows:
            f.write(json.dumps(dict(image_path=f'images/{name}', text=text), ensure_ascii=False) + '\n')
    assert [i + 1 for i, (_, t) in enumerate(rows) if not t.strip()] == list(EMPTY_LINES)
    surrogate = Path(root) / 'surrogate.jsonl'
    surrogate.write_text('{"image_path": "images/plain.png", "text": "好"}\n'
                         '{"image_path": "images/plain.png", "text": "坏\\ud800"}\n', encoding='utf-8')
    return dict(root=Path(root), ann_file=ann, surrogate_file=surrogate, paths=paths,
                skipped_images=('truncated.png', 'not_image.jpg', 'big.png', 'bomb_header.png'))
