"""extract_features -> build_index -> search, and visualize_attention, run as a user runs them (subprocess)
on a tiny R2D2 saved with save_pretrained; resuming after an interrupted extraction; error exits."""
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from r2d2lib.apis import R2D2Inferencer
from r2d2lib.registry import MODELS

ROOT = Path(__file__).parents[2]


def run(*args, cwd=ROOT):
    result = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                            env={'HF_HUB_OFFLINE': '1', 'PATH': '/usr/bin:/bin'}, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def tool(name):
    """A tool module imported in-process (for its error paths and helpers)."""
    sys.path.insert(0, str(ROOT / 'tools'))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / 'tools'))


@pytest.fixture(scope='module')
def setup(tmp_path_factory, toy_data):
    """A tiny R2D2 (conftest's TINY_MODEL) saved for inference, 8 test images and their 16 captions."""
    from tests.conftest import TINY_MODEL
    tmp = tmp_path_factory.mktemp('inference_tools')
    cfg = json.loads(json.dumps(TINY_MODEL))
    cfg['data_preprocessor']['tokenizer']['vocab_file'] = str(toy_data / 'vocab.txt')
    torch.manual_seed(0)
    model = MODELS.build({**cfg, '_scope_': 'r2d2lib'})
    model.init_weights()
    folder = model.eval().save_pretrained(tmp / 'model')
    images = tmp / 'images'
    images.mkdir()
    for path in sorted((toy_data / 'images').glob('test_*.png')):
        (images / path.name).write_bytes(path.read_bytes())
    texts = [json.loads(line)['text'] for line in (toy_data / 'test.jsonl').read_text().splitlines()]
    (tmp / 'texts.txt').write_text('\n'.join(texts) + '\n\n', encoding='utf-8')
    return dict(tmp=tmp, model=str(folder), images=images, texts=texts, inferencer=R2D2Inferencer(folder))


def extraction_args(setup, out, *extra):
    return ['--model', setup['model'], '--images', str(setup['images']),
            '--texts', str(setup['tmp'] / 'texts.txt'), '--out', str(out),
            '--shard-size', '3', '--batch-size', '2', *extra]


@pytest.fixture(scope='module')
def features(setup):
    """A complete extraction (in-process, to keep the suite fast)."""
    out = setup['tmp'] / 'features_full'
    tool('extract_features').main(extraction_args(setup, out))
    return out


def test_extraction_resumes_after_interruption(setup, capsys):
    out = setup['tmp'] / 'features'
    # "interrupted" after 2 new shards per modality
    tool('extract_features').main(extraction_args(setup, out, '--max-shards', '2'))
    first = capsys.readouterr().out
    assert 'images: 8 items, 3 shards' in first and '(2 written, 0 already done, stopped early' in first
    assert not (out / 'images' / 'shard_00002.json').exists()
    # a crash while writing shard 1 of the texts: its ids file (written last) is gone, a partial file left
    (out / 'texts' / 'shard_00001.json').unlink()
    (out / 'texts' / 'shard_00002.npy.partial').write_bytes(b'half a shard')
    kept = (out / 'texts' / 'shard_00000.npy').stat().st_mtime_ns
    second = run('tools/extract_features.py', *extraction_args(setup, out))
    assert '(1 written, 2 already done)' in second  # images: shard 2 only
    assert 'texts: 16 items, 6 shards' in second and '(5 written, 1 already done)' in second
    assert (out / 'texts' / 'shard_00000.npy').stat().st_mtime_ns == kept

    read_features = tool('extract_features').read_features
    image_embeds, image_ids, manifest = read_features(out / 'images')
    assert image_ids == sorted(str(p) for p in setup['images'].glob('*.png'))
    assert manifest['dim'] == 24 and manifest['num_shards'] == 3
    direct = setup['inferencer'].encode_images(image_ids).numpy()
    np.testing.assert_allclose(image_embeds, direct, atol=1e-6, rtol=0)
    text_embeds, text_ids, _ = read_features(out / 'texts')
    assert text_ids == setup['texts']  # the blank line is skipped
    direct = setup['inferencer'].encode_texts(text_ids).numpy()
    np.testing.assert_allclose(text_embeds, direct, atol=1e-6, rtol=0)

    # resuming with other inputs is refused, naming what changed
    with pytest.raises(SystemExit, match='num_items'):
        tool('extract_features').extract(setup['inferencer'], 'texts', setup['texts'][:5], out / 'texts', 3,
                                         setup['model'])


def test_unreadable_images_are_skipped_and_counted(setup, tmp_path):
    extract_features = tool('extract_features')
    paths = sorted(str(p) for p in setup['images'].glob('*.png'))[:4]
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'not a png')
    items = paths[:2] + [str(broken)] + paths[2:]
    inferencer = setup['inferencer']
    counts = extract_features.extract(inferencer, 'images', items, tmp_path / 'f', 2, 'tiny')
    assert counts == dict(written=3, skipped=0, unreadable=1)
    embeds, ids, manifest = extract_features.read_features(tmp_path / 'f')
    assert ids == paths and manifest['num_skipped'] == 1 and manifest['num_items'] == 5
    np.testing.assert_allclose(embeds, inferencer.encode_images(paths).numpy(), atol=1e-6, rtol=0)
    # the shard holding the bad file counts as done when resuming
    again = extract_features.extract(inferencer, 'images', items, tmp_path / 'f', 2, 'tiny')
    assert again == dict(written=0, skipped=3, unreadable=0)
    with pytest.raises(OSError, match='broken.png'):
        extract_features.extract(inferencer, 'images', items, tmp_path / 'g', 2, 'tiny', strict=True)


def test_index_and_search_match_the_inferencer(setup, features):
    build = tool('build_index')
    embeds, ids, _ = tool('extract_features').read_features(features / 'images')
    for kind in ('flat', 'ivf', 'hnsw'):
        index = build.build_index(embeds, kind, nlist=2, nprobe=2)
        _, rows = index.search(embeds[:3], 8)
        np.testing.assert_array_equal(rows[:, 0], [0, 1, 2])  # each image finds itself first
    with pytest.raises(SystemExit, match='--nlist 9 exceeds the 8 items'):
        build.build_index(embeds, 'ivf', nlist=9)
    with pytest.raises(SystemExit, match='needs at least 9984 training items'):
        build.build_index(embeds, 'ivf', nlist=2, pq=4)
    index_dir = setup['tmp'] / 'index'
    out = run('tools/build_index.py', str(features / 'images'), '--out', str(index_dir))
    assert 'Flat index of 8 images (dim 24)' in out
    _, stored_ids, meta = build.load_index(index_dir)
    assert stored_ids == ids and meta['kind'] == 'images' and meta['self_recall_at_10'] == 1.0

    query = setup['texts'][5]
    grid, result_file = setup['tmp'] / 'grid.png', setup['tmp'] / 'results.json'
    out = run('tools/search.py', str(index_dir), '--text', query, '--model', setup['model'], '--top-k', '5',
              '--rerank-k', '4', '--grid', str(grid), '--json', str(result_file))
    assert 'text query over 8 images (Flat)' in out
    results = json.loads(result_file.read_text(encoding='utf-8'))['results']
    inferencer = setup['inferencer']
    expected = inferencer.search(query, inferencer.build_gallery(images=ids), top_k=5, rerank_k=4)
    assert [r['item'] for r in results] == [r.item for r in expected]
    for got, want in zip(results, expected):
        assert got['score'] == pytest.approx(want.score, abs=1e-5)
        assert (got['rerank_score'] is None) == (want.rerank_score is None)
    assert results[4]['rerank_score'] is None and results[0]['rerank_score'] is not None
    with Image.open(grid) as picture:
        assert picture.width > 5 * 100 and picture.format == 'PNG'


def test_visualize_attention_draws_and_checks_the_toy_corpus(setup, toy_data, capsys):
    record = json.loads((toy_data / 'test_objects.jsonl').read_text(encoding='utf-8').splitlines()[0])
    text = record['captions'][0]
    obj = record['objects'][0]
    entity = f"{obj['color']}的{obj['size']}{obj['shape']}"
    png = setup['tmp'] / 'attention.png'
    out = run('tools/visualize_attention.py', str(toy_data / record['image_path']), text, '--entity', entity,
              '--layer', '1', '--model', setup['model'], '--out', str(png))
    assert 'layer 1; 4x4 patch grid' in out
    with Image.open(png) as picture:
        assert picture.size == (2 * 256 + 8, 256)  # image beside overlay, 32 px enlarged to 256

    visualize = tool('visualize_attention')
    with pytest.raises(SystemExit, match='has 1 layer, so layer 3 does not exist'):
        visualize.main([str(toy_data / record['image_path']), text, '--entity', entity, '--layer', '3',
                        '--model', setup['model'], '--out', str(png)])
    # no --layer: the paper's 3rd, or the last layer of a shallower model (here its only one)
    visualize.main([str(toy_data / record['image_path']), text, '--entity', entity,
                    '--model', setup['model'], '--out', str(png)])
    assert 'layer 1; 4x4 patch grid' in capsys.readouterr().out
    with pytest.raises(SystemExit, match="entity '紫色的圆形' does not occur"):
        visualize.main([str(toy_data / record['image_path']), text, '--entity', '紫色的圆形', '--layer', '1',
                        '--model', setup['model'], '--out', str(png)])


def test_toy_check_prints_fractions(setup, toy_data, capsys):
    visualize = tool('visualize_attention')
    visualize.main(['--toy-check', str(toy_data), '--layer', '1', '--model', setup['model']])
    result = json.loads(capsys.readouterr().out)
    assert result['pairs'] == 16 and result['layer'] == 1  # 8 test images x 2 objects
    assert 0 <= result['mass_win'] <= 1 and 0 < result['mean_own_mass'] < 1 and result['text'] == 'caption'
    visualize.main(['--toy-check', str(toy_data), '--layer', '1', '--toy-text', 'entity',
                    '--model', setup['model']])
    entity = json.loads(capsys.readouterr().out)
    assert entity['pairs'] == 16 and entity['text'] == 'entity'
    assert entity['mean_own_mass'] != result['mean_own_mass']  # the phrase alone: other maps


def test_per_layer_check_equals_one_layer_at_a_time(setup, toy_data):
    from r2d2lib.models.vlp import R2D2Model
    from r2d2lib.visualization import toy_check
    model = R2D2Model.from_pretrained(setup['model']).eval()
    options = dict(progress=False, text='entity')
    per_layer = toy_check.measure_entity_localisation_per_layer(model, toy_data, **options)
    assert sorted(per_layer) == list(range(1, len(model.text_image_encoder.layer) + 1))
    for layer, result in per_layer.items():
        assert result == toy_check.measure_entity_localisation(model, toy_data, layer=layer, **options)


def test_model_options_are_checked(setup, tmp_path):
    extract_features = tool('extract_features')
    with pytest.raises(SystemExit, match='give --model'):
        extract_features.main(['--texts', str(setup['tmp'] / 'texts.txt'), '--out', str(tmp_path)])
    checkpoint = tmp_path / 'epoch_1.pth'
    checkpoint.write_bytes(b'')
    with pytest.raises(FileNotFoundError, match='holds 0 .py files'):
        extract_features.main(['--checkpoint', str(checkpoint), '--texts', str(setup['tmp'] / 'texts.txt'),
                               '--out', str(tmp_path)])
