"""R2D2Inferencer.caption and tools/caption.py: same captions as the model, JSON lines, clear errors."""
import copy
import json
import sys
from pathlib import Path

import pytest
import torch
from mmengine.registry import init_default_scope

from r2d2lib import R2D2Inferencer
from r2d2lib.registry import MODELS
from tests.models.captioners.test_captioner import TINY_CAPTIONER

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'tools'))
import caption as caption_tool  # noqa: E402  (tools/caption.py)

torch.set_num_threads(1)
init_default_scope('r2d2lib')


@pytest.fixture(scope='module')
def saved_captioner(toy_data, tmp_path_factory):
    cfg = copy.deepcopy(TINY_CAPTIONER)
    cfg['data_preprocessor']['tokenizer']['vocab_file'] = str(toy_data / 'vocab.txt')
    cfg['generation'] = dict(max_length=8)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    with torch.no_grad():
        for layer in model.text_decoder.model.bert.encoder.layer:
            layer.crossattention.output.dense.weight.mul_(100)
    return model.eval().save_pretrained(tmp_path_factory.mktemp('captioner') / 'model'), model.eval()


def test_inferencer_captions_as_the_model_does(saved_captioner, toy_data):
    folder, model = saved_captioner
    paths = sorted(str(p) for p in (toy_data / 'images').glob('test_*'))[:3]
    inferencer = R2D2Inferencer(str(folder), device='cpu', batch_size=2)
    captions = inferencer.caption(paths, beams=2)
    from r2d2lib.apis.inferencer import load_image
    expected = model.generate(model.preprocess([load_image(p) for p in paths]), num_beams=2)
    assert captions == expected and len(captions) == 3
    assert inferencer.caption(paths[0]) == [model.generate(model.preprocess([load_image(paths[0])]))[0]]


def test_caption_errors_name_the_problem(saved_captioner, toy_data, tmp_path, tiny_model_cfg):
    folder, _ = saved_captioner
    inferencer = R2D2Inferencer(str(folder), device='cpu')
    image = str(sorted((toy_data / 'images').glob('test_*'))[0])
    with pytest.raises(ValueError, match='empty'):
        inferencer.caption([])
    with pytest.raises(ValueError, match='max_length'):
        inferencer.caption([image], max_length=1)
    with pytest.raises(ValueError, match='beams'):
        inferencer.caption([image], beams=0)
    fake = tmp_path / 'not_an_image.png'
    fake.write_text('hello')
    with pytest.raises(OSError, match='not_an_image.png'):
        inferencer.caption([image, str(fake)])
    with pytest.raises(OSError, match='missing.png'):
        inferencer.caption([str(tmp_path / 'missing.png')])
    retrieval = R2D2Inferencer(MODELS.build({**tiny_model_cfg, 'objective': None}))
    with pytest.raises(TypeError, match='cannot caption'):
        retrieval.caption([image])


def test_caption_tool_prints_and_writes_json_lines(saved_captioner, toy_data, tmp_path, capsys):
    folder, _ = saved_captioner
    paths = sorted(str(p) for p in (toy_data / 'images').glob('test_*'))[:2]
    out = tmp_path / 'captions.jsonl'
    assert caption_tool.main(['--model', str(folder), *paths, '--beams', '3', '--out', str(out),
                              '--device', 'cpu']) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    rows = [json.loads(line) for line in out.read_text(encoding='utf-8').splitlines()]
    assert [r['image'] for r in rows] == paths
    assert printed == [f'{r["image"]}\t{r["caption"]}' for r in rows]
    assert caption_tool.main(['--model', str(folder), paths[0], '--beams', '0']) == 2
    assert 'beams' in capsys.readouterr().err
