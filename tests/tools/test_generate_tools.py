"""tools/generate_demo.py end to end at miniature size (2 iterations, 1 sampling step, the 8-image toy
corpus of conftest, a random demo-sized R2D2), and tools/generate.py on a tiny saved generator: the PNG grid,
seeded determinism, bad arguments named, a retrieval model refused."""
import importlib
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from PIL import Image

import r2d2lib  # noqa: F401
from r2d2lib.apis import R2D2Inferencer
from r2d2lib.datasets.toy_attributes import attribute_accuracy
from r2d2lib.evaluation.metrics.text2image import Text2ImageMetric
from r2d2lib.models.generators import TextToImageDiffusion
from r2d2lib.registry import MODELS

ROOT = Path(__file__).parents[2]
TEXTS = ['左上角有一个红色的大圆形，右下角有一个蓝色的小三角形',
         '绿色的小正方形在右上角，黄色的大圆形在左下角']
ROWS = ['generated, guidance 1', 'generated, guidance 3', 'chance (guidance 3 vs other captions)',
        'real test images (32 px)']


def tool(name):
    """A tools/ script imported in-process."""
    sys.path.insert(0, str(ROOT / 'tools'))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / 'tools'))


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cell(grid: Image.Image, n: int, columns: int, size: int) -> Image.Image:
    """Cell ``n`` of a result_grid (pad 6, label height 30)."""
    x, y = 6 + (n % columns) * (size + 6), 6 + (n // columns) * (size + 30 + 6)
    return grid.crop((x, y, x + size, y + size))


def same_pixels(cell_image: Image.Image, image: Image.Image) -> bool:
    """Whether a grid cell is ``image`` scaled up by an integer factor (NEAREST)."""
    factor = cell_image.size[0] // image.size[0]
    return np.array_equal(np.asarray(cell_image.convert('RGB'))[::factor, ::factor], np.asarray(image))


# ----------------------------------------------------------------------------- generate_demo.py
@pytest.fixture(scope='module')
def demo_run(tmp_path_factory, toy_data):
    """generate_demo.main on a copy of the 8-test-image toy corpus, from a random demo-config R2D2."""
    init_default_scope('r2d2lib')
    tmp = tmp_path_factory.mktemp('generate_demo')
    data = tmp / 'toy_shapes'
    shutil.copytree(toy_data, data)
    cfg = Config.fromfile(str(ROOT / 'configs' / 'demo' / 'r2d2_tiny_shapes.py')).model
    cfg.data_preprocessor.tokenizer = dict(vocab_file=str(data / 'vocab.txt'))
    torch.manual_seed(0)
    r2d2 = MODELS.build(cfg.to_dict())
    r2d2.init_weights()
    r2d2.eval().save_pretrained(tmp / 'demo_model')
    demo = tool('generate_demo')
    real_ensure = demo.ensure_toy_shapes
    # The tool calls ensure_toy_shapes(data) with the full corpus's parameters (2,000 + 200 images, 64 px),
    # which would regenerate the corpus into --data; here it checks the miniature corpus instead.
    demo.ensure_toy_shapes = lambda out: real_ensure(out, num_train=32, num_test=8, image_size=32, seed=0)
    threads = torch.get_num_threads()
    try:
        code = demo.main(['--iters', '2', '--steps', '1', '--data', str(data), '--demo-model',
                          str(tmp / 'demo_model'), '--work-dir', str(tmp / 'work'), '--grid',
                          str(tmp / 'grid.png')])
    finally:
        demo.ensure_toy_shapes = real_ensure
        torch.set_num_threads(threads)
    assert code == 0
    captions, paths = demo.test_captions(str(data))
    return dict(tmp=tmp, data=data, captions=captions, paths=paths,
                saved=json.loads((tmp / 'work' / 'generate_seed0.json').read_text(encoding='utf-8')))


def test_generate_demo_writes_every_row_with_finite_numbers(demo_run):
    saved, captions = demo_run['saved'], demo_run['captions']
    assert len(captions) == 8 and saved['seed'] == 0 and saved['steps'] == 1 and saved['iterations'] == 2
    assert list(saved['results']) == ROWS
    for name, row in saved['results'].items():
        assert row['objects'] == 16, name  # two named objects per caption
        for key in ('colour_and_shape', 'colour', 'shape', 'R-precision'):
            assert 0 <= row[key] <= 100, (name, key)
        assert all(math.isfinite(v) for v in row.values()), name
    generated = saved['results']['generated, guidance 3']
    for key in ('R-precision_reranked', 'similarity', 'frechet_r2d2', 'real_R-precision', 'real_similarity'):
        assert math.isfinite(generated[key]), key
    assert generated['frechet_r2d2'] >= 0
    chance = saved['results']['chance (guidance 3 vs other captions)']
    assert chance['R-precision'] == pytest.approx(100 / len(set(captions)))
    real = saved['results']['real test images (32 px)']
    assert real['colour_and_shape'] == 100.0  # the checker reads every real toy image right
    assert real['R-precision'] == generated['real_R-precision']
    assert real['similarity'] == generated['real_similarity']
    assert saved['grid_captions'] == captions[:4]


def test_generate_demo_scores_what_its_saved_generator_draws(demo_run):
    """The saved folder loads, draws the very images the tool scored, and the rows are those images'
    scores: attribute accuracy, chance at offset N/2, the real images' ceiling, Text2ImageMetric."""
    generator = TextToImageDiffusion.from_pretrained(demo_run['tmp'] / 'work' / 'model')
    assert not generator.training and generator.image_size == 32 and generator.vae is None
    captions, results = demo_run['captions'], demo_run['saved']['results']
    images = generator.generate(captions, steps=1, guidance=3.0, seed=0, batch_size=50)
    assert attribute_accuracy(images, captions) == {k: results['generated, guidance 3'][k] for k in
                                                    ('colour', 'shape', 'colour_and_shape', 'objects')}
    chance = attribute_accuracy(images, captions, chance_offset=4)
    assert chance == {k: v for k, v in results['chance (guidance 3 vs other captions)'].items()
                      if k != 'R-precision'}
    real = [Image.open(p).convert('RGB') for p in demo_run['paths']]
    assert attribute_accuracy(real, captions) == {k: results['real test images (32 px)'][k] for k in
                                                  ('colour', 'shape', 'colour_and_shape', 'objects')}
    scores = Text2ImageMetric(evaluator=str(demo_run['tmp'] / 'demo_model'), rerank_k=16).score(
        images, captions, real)
    assert scores == pytest.approx({k: v for k, v in results['generated, guidance 3'].items()
                                    if k not in ('colour', 'shape', 'colour_and_shape', 'objects')})


def test_generate_demo_grid_shows_caption_real_image_and_four_generated(demo_run):
    grid = Image.open(demo_run['tmp'] / 'grid.png').convert('RGB')
    # 4 held-out captions x (caption card, real image, 4 generated), cells of 96 px
    assert grid.size == (6 * (96 + 6) + 6, 4 * (96 + 30 + 6) + 6)
    generator = TextToImageDiffusion.from_pretrained(demo_run['tmp'] / 'work' / 'model')
    captions = demo_run['captions'][:4]
    drawn = generator.generate(captions, num_images=4, steps=1, guidance=3.0, seed=0)
    for row in range(4):
        real = Image.open(demo_run['paths'][row]).convert('RGB')
        assert same_pixels(cell(grid, 6 * row + 1, 6, 96), real), row
        for k in range(4):
            assert same_pixels(cell(grid, 6 * row + 2 + k, 6, 96), drawn[4 * row + k]), (row, k)
        card = np.asarray(cell(grid, 6 * row, 6, 96))
        assert (card == (245, 245, 235)).all(-1).mean() > 0.5  # the caption's card, not an image


# ----------------------------------------------------------------------------- generate.py
@pytest.fixture(scope='module')
def folders(tmp_path_factory, toy_data):
    """A tiny random TextToImageDiffusion and a tiny R2D2, each saved with save_pretrained."""
    from tests.conftest import TINY_MODEL
    from tests.models.generators.conftest import TINY_GENERATOR
    init_default_scope('r2d2lib')
    tmp = tmp_path_factory.mktemp('generate_tool')
    out = {}
    for name, base in (('generator', TINY_GENERATOR), ('r2d2', TINY_MODEL)):
        cfg = json.loads(json.dumps(base))
        cfg['data_preprocessor']['tokenizer']['vocab_file'] = str(toy_data / 'vocab.txt')
        torch.manual_seed(0)
        model = MODELS.build(cfg)
        model.init_weights()
        out[name] = str(model.eval().save_pretrained(tmp / name))
    return out


def generate(folder, out, *extra):
    return tool('generate').main([*TEXTS, '--model', folder, '--num', '2', '--steps', '2', '--quiet',
                                  '--out', str(out), *extra])


def test_generate_writes_a_grid_of_num_by_texts_cells_as_the_api_draws_them(folders, tmp_path, capsys):
    out = tmp_path / 'grid.png'
    assert generate(folders['generator'], out, '--seed', '7', '--guidance', '2') == 0
    assert str(out) in capsys.readouterr().out
    grid = Image.open(out).convert('RGB')
    # 2 texts x 2 images, 32 px images in 64 px cells (the minimum cell)
    assert grid.size == (2 * (64 + 6) + 6, 2 * (64 + 30 + 6) + 6)
    images = R2D2Inferencer(folders['generator']).generate(TEXTS, num_images=2, steps=2, guidance=2.0, seed=7)
    assert len(images) == 4 and images[0].size == (32, 32)
    for n, image in enumerate(images):  # text 0's images first, one row per text
        assert same_pixels(cell(grid, n, 2, 64), image), n
    assert not np.array_equal(np.asarray(images[0]), np.asarray(images[1]))


def test_generate_same_seed_same_png_bytes(folders, tmp_path):
    paths = [tmp_path / f'{name}.png' for name in ('a', 'b', 'c')]
    for path, seed in zip(paths, ('3', '3', '4')):
        assert generate(folders['generator'], path, '--seed', seed, '--sampler', 'ddpm') == 0
    first, again, other = (path.read_bytes() for path in paths)
    assert first == again
    assert first != other


@pytest.mark.parametrize('texts, extra, message', [
    (['左上角有一个红色的大圆形', ''], [], 'text 1 is empty'),
    (TEXTS, ['--steps', '0'], 'steps must be an integer >= 1, got 0'),
    (TEXTS, ['--guidance', '-1'], 'guidance (the classifier-free guidance scale) must be a finite number '
                                  '>= 0, got -1.0'),
    (TEXTS, ['--image-size', '33'], 'image_size must be a positive multiple of 2'),
    (TEXTS, ['--cell-size', '8'], '--cell-size must be >= 16, got 8'),  # was a traceback after sampling
])
def test_generate_names_the_bad_argument(folders, tmp_path, capsys, texts, extra, message):
    out = tmp_path / 'grid.png'
    code = tool('generate').main([*texts, '--model', folders['generator'], '--quiet', '--out', str(out),
                                  *extra])
    assert code == 2
    assert f'error: {message}' in capsys.readouterr().err
    assert not out.exists()


def test_generate_refuses_a_retrieval_model(folders, tmp_path, capsys):
    out = tmp_path / 'grid.png'
    assert generate(folders['r2d2'], out) == 2
    assert 'error: R2D2Model cannot generate images: it has no UNet' in capsys.readouterr().err
    assert not out.exists()


def test_generate_demo_refuses_fewer_than_two_iterations(capsys):
    """--iters 1 made a cosine schedule with begin == end, which mmengine refused after the model was
    built."""
    with pytest.raises(SystemExit) as stop:
        tool('generate_demo').main(['--iters', '1'])
    assert stop.value.code == 2
    assert '--iters must be >= 2' in capsys.readouterr().err


def test_benchmark_generate_reports_images_per_second_and_the_unets_share(capsys):
    """tools/benchmark.py generate at 2 steps: one line per round and a median line; the UNet runs once per
    step (guidance 3: conditional and unconditional in one batch), its share of the time is a fraction."""
    sys.path.insert(0, str(ROOT / 'tools'))
    try:
        import benchmark as dispatcher
    finally:
        sys.path.remove(str(ROOT / 'tools'))
    assert dispatcher.main(['generate', '--steps', '2', '--rounds', '2', '--batch-size', '1',
                            '--threads', '1']) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{')]
    assert [line['round'] for line in lines] == [0, 1, 'median']
    median = lines[-1]
    assert (median['steps'], median['guidance'], median['image_size']) == (2, 3.0, 32)
    assert median['unet_calls'] == 2
    for line in lines[:2]:
        assert line['images_per_s'] == pytest.approx(1 / line['wall_s'], rel=1e-2)
        assert 0 < line['unet_wall_share'] < 1 and 0 < line['unet_cpu_share'] <= 1
    assert median['images_per_s_range'][0] <= median['images_per_s'] <= median['images_per_s_range'][1]
