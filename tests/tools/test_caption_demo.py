"""tools/caption_demo.py end to end at miniature size: one epoch from a random demo-sized R2D2; the table
has both decodings and both baselines, the JSON and the PNG are written."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from mmengine.config import Config
from mmengine.registry import init_default_scope
from PIL import Image

import r2d2lib  # noqa: F401
from r2d2lib.registry import MODELS

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / 'tools'))
import caption_grid  # noqa: E402  (tools/caption_grid.py)

init_default_scope('r2d2lib')


def test_caption_demo_scores_both_decodings_beside_both_baselines(toy_data, tmp_path):
    cfg = Config.fromfile(str(ROOT / 'configs' / 'demo' / 'r2d2_tiny_shapes.py')).model
    cfg.data_preprocessor.tokenizer = dict(vocab_file=str(toy_data / 'vocab.txt'))
    model = MODELS.build(cfg.to_dict())
    model.init_weights()
    model.save_pretrained(tmp_path / 'demo_model')
    work = tmp_path / 'work'
    result = subprocess.run(
        [sys.executable, 'tools/caption_demo.py', '--epochs', '1', '--data', str(toy_data), '--demo-model',
         str(tmp_path / 'demo_model'), '--work-dir', str(work), '--png-images', '3'],
        cwd=ROOT, capture_output=True, text=True, env={'HF_HUB_OFFLINE': '1', 'PATH': '/usr/bin:/bin',
                                                       'OMP_NUM_THREADS': '1'}, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    saved = json.loads((work / 'caption_seed0.json').read_text(encoding='utf-8'))
    assert list(saved['results']) == ['generated (greedy)', 'generated (beam 3)', 'nearest training image',
                                      'most frequent caption']
    assert saved['iterations'] == 2  # 32 images x 2 captions, batch 32, one epoch
    lines = (toy_data / 'train.jsonl').read_text().splitlines()
    train_captions = [json.loads(line)['text'] for line in lines]
    assert saved['most_frequent_caption'] in train_captions
    assert all(example['nearest'] in train_captions for example in saved['examples'])
    for row in saved['results'].values():
        assert 0 <= row['BLEU-4'] <= 100 and row['CIDEr-D'] >= 0
    assert 'generated (beam 3)' in result.stdout and 'nearest training image' in result.stdout
    sheet = Image.open(work / 'caption_seed0.png')
    assert sheet.size[1] == 3 * caption_grid.ROW + 8 and np.asarray(sheet).min() < 128
    assert (work / 'caption_seed0.txt').exists() == (caption_grid.find_cjk_font() is None)
    assert (work / 'model' / 'config.json').exists()
