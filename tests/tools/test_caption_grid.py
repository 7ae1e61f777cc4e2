"""tools/caption_grid.py: the caption PNG with a CJK font, and its fallback without one."""
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / 'tools'))
import caption_grid  # noqa: E402  (tools/caption_grid.py)


@pytest.fixture
def two_images(tmp_path):
    paths = []
    for k, color in enumerate(('red', 'blue')):
        path = tmp_path / f'im{k}.png'
        Image.new('RGB', (64, 64), color).save(path)
        paths.append(str(path))
    return paths


def text_pixels(png: Path, rows: int) -> np.ndarray:
    sheet = np.asarray(Image.open(png).convert('L'))
    assert sheet.shape == (caption_grid.ROW * rows + 8, sheet.shape[1])
    return sheet[:, 40 + caption_grid.THUMB + 12:]


def test_with_a_cjk_font_the_captions_are_drawn_beside_the_images(two_images, tmp_path):
    font = caption_grid.find_cjk_font()
    if font is None:
        pytest.skip('no CJK font installed (make system-deps installs fonts-wqy-microhei)')
    out = tmp_path / 'grid.png'
    written = caption_grid.write_caption_grid(str(out), two_images, [['左上角有一个红色的圆形'], ['三角形']])
    assert written == [str(out)]
    sheet = np.asarray(Image.open(out).convert('RGB'))
    # wide enough for the longest line (11 characters at FONT_SIZE px)
    width = 40 + caption_grid.THUMB + 12 + 11 * caption_grid.FONT_SIZE + 12
    assert sheet.shape[:2] == (2 * caption_grid.ROW + 8, width)
    assert tuple(sheet[8 + 10, 50]) == (255, 0, 0)
    assert tuple(sheet[8 + caption_grid.ROW + 10, 50]) == (0, 0, 255)
    text = text_pixels(out, 2)
    assert (text < 128).any() and not (tmp_path / 'grid.txt').exists()
    # real glyphs, not one missing-glyph box for every character: different characters, different pixels
    for name, chars in (('a.png', '圆'), ('b.png', '形')):
        caption_grid.write_caption_grid(str(tmp_path / name), two_images[:1], [[chars]], font_path=font)
    assert not np.array_equal(text_pixels(tmp_path / 'a.png', 1), text_pixels(tmp_path / 'b.png', 1))


def test_without_a_cjk_font_the_png_labels_indices_and_a_text_file_lists_captions(two_images, tmp_path,
                                                                                   capsys):
    out = tmp_path / 'grid.png'
    rows = [['生成一', '参考一'], ['生成二', '参考二']]
    written = caption_grid.write_caption_grid(str(out), two_images, rows, font_path=None)
    assert written == [str(out), str(tmp_path / 'grid.txt')]
    assert (tmp_path / 'grid.txt').read_text(encoding='utf-8') == '#0\t生成一\t参考一\n#1\t生成二\t参考二\n'
    assert Image.open(out).size == (40 + caption_grid.THUMB + 12, 2 * caption_grid.ROW + 8)
    message = capsys.readouterr().out
    assert 'fc-list :lang=zh' in message and 'fonts-wqy-microhei' in message and 'grid.txt' in message


def test_no_fontconfig_and_no_known_font_finds_none(monkeypatch, tmp_path):
    from r2d2lib.visualization import grid
    monkeypatch.setattr(grid.shutil, 'which', lambda name: None)
    monkeypatch.setattr(grid, 'CJK_FONT_PATHS', (str(tmp_path / 'missing.ttc'),))
    monkeypatch.delenv('R2D2LIB_FONT', raising=False)
    assert caption_grid.find_cjk_font() is None


def test_rows_must_match_images(two_images, tmp_path):
    with pytest.raises(ValueError, match='2 images but 1 caption rows'):
        caption_grid.write_caption_grid(str(tmp_path / 'g.png'), two_images, [['x']], font_path=None)
