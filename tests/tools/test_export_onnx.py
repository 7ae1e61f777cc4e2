"""ONNX export of a tiny R2D2: the tool's parity check, dynamic axes, real inputs, a check that can fail."""
import copy
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip('onnxruntime', reason='the onnx extra (pip install -e .[onnx]) is not installed')

from r2d2lib.deploy import check_parity, export_onnx, ort_session  # noqa: E402
from r2d2lib.registry import MODELS  # noqa: E402

ROOT = Path(__file__).parents[2]


def _tool():
    """tools/export_onnx.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location('export_onnx_tool', ROOT / 'tools' / 'export_onnx.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(cfg):
    torch.manual_seed(0)
    return MODELS.build({**cfg, '_scope_': 'r2d2lib'}).eval()


@pytest.fixture(scope='module')
def exported(toy_data, tmp_path_factory):
    """The tiny R2D2 saved with save_pretrained and exported by tools/export_onnx.py (with its check)."""
    from tests.conftest import TINY_MODEL
    cfg = copy.deepcopy(TINY_MODEL)
    cfg['data_preprocessor']['tokenizer']['vocab_file'] = str(toy_data / 'vocab.txt')
    tool = _tool()
    model = _build(cfg)
    tmp_path = tmp_path_factory.mktemp('onnx_export')
    model.save_pretrained(tmp_path / 'pretrained')
    out = tmp_path / 'onnx'
    status = tool.main([str(tmp_path / 'pretrained'), '--out', str(out)])
    return model, out, status


def test_tool_exports_three_graphs_that_match_pytorch(exported):
    """Exit status 0, and the check covered every output at batch 1 and 7, lengths 40 and 5, all < 1e-4."""
    model, out, status = exported
    assert status == 0
    graphs = sorted(p.name for p in out.glob('*.onnx'))
    assert graphs == ['image_tower.onnx', 'matching.onnx', 'text_tower.onnx']
    parity = json.loads((out / 'check.json').read_text())['parity']
    seen = {(r['part'], r['output'], r['batch_size'], r['text_length']) for r in parity}
    expected = {('image', o, b, 40) for o in ('image_embeds', 'image_tokens') for b in (1, 7)}
    expected |= {('text', o, b, n) for o in ('text_embeds', 'text_hidden') for b in (1, 7) for n in (40, 5)}
    expected |= {('matching', 'match_prob', b, n) for b in (1, 7) for n in (40, 5)}
    assert seen == expected
    assert all(0 <= r['max_abs_error'] < 1e-4 and r['ok'] for r in parity)
    meta = json.loads((out / 'export.json').read_text())
    assert meta['preprocessing']['image_size'] == 32 and meta['preprocessing']['max_length'] == 40
    assert meta['graphs']['text']['dynamic_axes']['input_ids'] == {'0': 'batch', '1': 'text_length'}
    assert (out / 'tokenizer.json').is_file()


def test_graphs_have_dynamic_batch_and_length_and_embed_real_inputs(exported):
    """Symbolic B and L in the graphs; tokenised captions and an image give PyTorch's embeddings and score."""
    import onnx
    model, out, _ = exported
    text_graph = onnx.load(str(out / 'text_tower.onnx'))
    dims = [d.dim_param or d.dim_value for d in text_graph.graph.input[0].type.tensor_type.shape.dim]
    assert all(isinstance(d, str) and d for d in dims), dims  # both axes symbolic
    image_graph = onnx.load(str(out / 'image_tower.onnx'))
    dims = [d.dim_param or d.dim_value for d in image_graph.graph.input[0].type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1:] == [3, 32, 32]

    from PIL import Image
    texts = ['a red circle', 'two small blue squares and a green triangle on the left', 'x']
    tokens = model.tokenize(texts)
    # trimmed to the longest caption: a length the export never saw
    length = int(tokens['attention_mask'].sum(1).max())
    ids, mask = tokens['input_ids'][:, :length], tokens['attention_mask'][:, :length]
    text_embeds, text_hidden = ort_session(out / 'text_tower.onnx').run(
        None, {'input_ids': ids.numpy(), 'attention_mask': mask.numpy()})
    images = [Image.fromarray(np.full((40, 50, 3), v, np.uint8)) for v in (0, 90, 200)]
    pixels = model.preprocess(images)
    image_embeds, image_tokens = ort_session(out / 'image_tower.onnx').run(
        None, {'pixel_values': pixels.numpy()})
    prob, = ort_session(out / 'matching.onnx').run(
        None, {'image_tokens': image_tokens, 'text_hidden': text_hidden, 'text_mask': mask.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(text_embeds, model.encode_text(ids, mask).numpy(), atol=1e-5)
        np.testing.assert_allclose(image_embeds, model.encode_image(pixels).numpy(), atol=1e-5)
        np.testing.assert_allclose(prob, model.match(pixels, ids, mask).numpy(), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(text_embeds, axis=1), 1.0, atol=1e-5)
    assert 0 < prob.min() and prob.max() < 1 and prob.std() > 0  # real probabilities, not saturated


def test_parity_check_detects_a_different_model(exported):
    """Perturbing one projection after the export makes the image embeddings (only) fail the check."""
    model, out, _ = exported
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.vision_proj.weight.add_(0.05)
    results = check_parity(model, out, ['image', 'text'], batch_sizes=(2,), text_lengths=(6,))
    failed = {(r.part, r.output) for r in results if not r.ok}
    assert failed == {('image', 'image_embeds')}


def test_dual_encoder_exports_towers_only(tiny_model_cfg, tmp_path):
    """A model without cross encoders exports the two towers; asking for matching names the problem."""
    cfg = {k: v for k, v in tiny_model_cfg.items()
           if k not in ('text_image_encoder', 'image_text_encoder', 'objective')}  # R2D2Objective needs them
    model = _build({**cfg, 'type': 'DualEncoderModel'})
    with pytest.raises(ValueError, match='no cross encoders'):
        export_onnx(model, tmp_path, parts=['matching'], save_tokenizer=False)


def test_tool_rejects_config_without_checkpoint(tmp_path):
    tool = _tool()
    with pytest.raises(ValueError, match='--checkpoint'):
        tool.load_model(str(ROOT / 'configs/demo/r2d2_tiny_shapes.py'))
    with pytest.raises(FileNotFoundError, match='missing.py'):
        tool.load_model(str(tmp_path / 'missing.py'), checkpoint='x.pth')
