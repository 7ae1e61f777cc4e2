"""open_rgb, the one image decoder: every hostile image reads as its pixels mean, or fails by name.

Each conversion test fails on the decoder of before (``Image.open(...).convert('RGB')``): a 16-bit
image read as white, alpha dropped to show the hidden colour, EXIF orientation ignored, float and
32-bit images clipped, no pixel limit.
"""
import io

import numpy as np
import pytest
from PIL import Image

from r2d2lib.datasets.transforms import LoadImage
from r2d2lib.io.images import (
    DEFAULT_MAX_PIXELS,
    ImageTooLargeError,
    UnreadableImageError,
    load_rgb,
    open_rgb,
)
from tests.datasets.hostile import EXPECTED_RGB, png_header_bomb, write_images


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp('hostile') / 'images')


@pytest.mark.parametrize('name', sorted(EXPECTED_RGB))
def test_modes_convert_to_the_pixels_they_mean(images, name):
    pixels = load_rgb(images[name])
    assert pixels.dtype == np.uint8 and pixels.shape == (16, 16, 3)
    assert tuple(int(v) for v in pixels[0, 0]) == EXPECTED_RGB[name]
    assert (pixels == pixels[0, 0]).all()  # uniform images stay uniform


def test_the_same_conversion_from_bytes_and_from_an_opened_image(images):
    data = images['transparent.png'].read_bytes()
    assert (load_rgb(data) == 255).all()
    with Image.open(images['grey16.png']) as opened:
        assert opened.mode.startswith('I;16')
        assert np.asarray(open_rgb(opened))[0, 0].tolist() == [128, 128, 128]


def test_exif_orientation_is_applied(images):
    pixels = load_rgb(images['rotated.png'])
    assert pixels.shape == (32, 16, 3)  # stored 32 wide, 16 tall; displayed rotated
    assert pixels[0, 0].tolist() == [255, 0, 0] and pixels[-1, -1].tolist() == [0, 0, 255]


def test_sixteen_bit_scale_is_exact_at_the_ends():
    values = np.array([[0, 257, 65535, 128]], np.uint16)
    out = io.BytesIO()
    Image.fromarray(values).save(out, 'PNG')
    assert load_rgb(out.getvalue())[0, :, 0].tolist() == [0, 1, 255, 0]


def test_float_outside_unit_range_and_nan_are_errors():
    for values, match in [(np.full((2, 2), 200.0, np.float32), r'values in \[200, 200\], outside \[0, 1\]'),
                          (np.array([[0.5, np.nan], [np.inf, 0.1]], np.float32), '2 NaN or infinite')]:
        with pytest.raises(UnreadableImageError, match=match):
            open_rgb(Image.fromarray(values, 'F'), where='x.tiff')


@pytest.mark.filterwarnings('ignore::PIL.Image.DecompressionBombWarning')
def test_pixel_limit_from_the_header_before_decoding(images):
    assert DEFAULT_MAX_PIXELS < Image.MAX_IMAGE_PIXELS // 2  # well below Pillow's own warning
    with pytest.raises(ImageTooLargeError, match=r'big.png.*300x300 = 90,000 pixels.*max_pixels=50,000'):
        open_rgb(images['big.png'], max_pixels=50_000)
    assert load_rgb(images['big.png']).shape == (300, 300, 3)  # under the default limit
    assert load_rgb(images['big.png'], max_pixels=None).shape == (300, 300, 3)
    # a 12,000 x 12,000 header (144 megapixels) under the default limit: refused, not decoded
    with pytest.raises(ImageTooLargeError, match='144,000,000 pixels') as info:
        open_rgb(png_header_bomb(12_000, 12_000), where='upload.png')
    assert info.value.category == 'too_large' and info.value.path == 'upload.png'


def test_header_bomb_is_too_large_not_a_crash(images):
    assert images['bomb_header.png'].stat().st_size < 100
    with pytest.raises(ImageTooLargeError) as info:
        open_rgb(images['bomb_header.png'])
    assert info.value.category == 'too_large' and 'bomb_header.png' in str(info.value)


@pytest.mark.parametrize('name,category', [('truncated.png', 'unreadable'), ('not_image.jpg', 'unreadable'),
                                           ('absent.png', 'missing')])
def test_unreadable_and_missing_name_the_file(images, name, category):
    path = images['plain.png'].parent / name
    with pytest.raises(UnreadableImageError, match=name) as info:
        open_rgb(path)
    assert info.value.category == category


def test_load_image_transform_takes_the_limit_from_the_config(images):
    results = LoadImage(max_pixels=50_000)(dict(img_path=str(images['grey16.png'])))
    assert results['img'][0, 0].tolist() == [128, 128, 128]
    with pytest.raises(ImageTooLargeError, match='big.png'):
        LoadImage(max_pixels=50_000)(dict(img_path=str(images['big.png'])))
    with pytest.raises(ValueError, match='max_pixels must be positive'):
        LoadImage(max_pixels=0)
