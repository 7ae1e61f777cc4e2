"""tools/extract_features.py --glob: only the --images whose file name matches (folder or list)."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
spec = importlib.util.spec_from_file_location('extract_features', ROOT / 'tools' / 'extract_features.py')
extract_features = importlib.util.module_from_spec(spec)
spec.loader.exec_module(extract_features)


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / 'images'
    for name in ('train_0.png', 'test_0.png', 'sub/test_1.JPG', 'sub/test_2.txt', 'test_3.png.bak'):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b'')
    return folder


def inputs(*argv):
    return extract_features.collect_inputs(extract_features.parse_args(['--model', 'm', '--out', 'o', *argv]))


def test_glob_keeps_matching_file_names_at_any_depth(images):
    assert inputs('--images', str(images))['images'] == [
        str(images / 'sub' / 'test_1.JPG'), str(images / 'test_0.png'), str(images / 'train_0.png')]
    assert inputs('--images', str(images), '--glob', 'test_*')['images'] == [
        str(images / 'sub' / 'test_1.JPG'), str(images / 'test_0.png')]
    assert inputs('--images', str(images), '--glob', '*.png')['images'] == [
        str(images / 'test_0.png'), str(images / 'train_0.png')]  # case-sensitive, as a shell glob


def test_glob_filters_a_list_file_and_says_when_nothing_matches(images, tmp_path):
    listing = tmp_path / 'list.txt'
    listing.write_text('images/train_0.png\nimages/sub/test_1.JPG\n')
    assert inputs('--images', str(listing), '--glob', 'train_*')['images'] == [str(images / 'train_0.png')]
    with pytest.raises(SystemExit, match="no path in .*list.txt has a file name matching 'val_\\*'"):
        inputs('--images', str(listing), '--glob', 'val_*')
    with pytest.raises(SystemExit, match="holds no image files named 'val_\\*'"):
        inputs('--images', str(images), '--glob', 'val_*')


def test_glob_without_images_is_an_error(capsys):
    with pytest.raises(SystemExit):
        inputs('--texts', 't.txt', '--glob', 'test_*')
    assert '--glob filters --images' in capsys.readouterr().err
