"""tools/benchmark.py caption: both methods generate, lines and ratios are reported (tiny sizes)."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / 'tools'))
import benchmark as dispatcher  # noqa: E402  (tools/benchmark.py)


def test_caption_benchmark_reports_both_methods_and_ratios(tmp_path, capsys):
    out = tmp_path / 'caption.json'
    assert dispatcher.main(['caption', '--batch-size', '2', '--beams', '1', '2', '--max-length', '4',
                            '--rounds', '1', '--threads', '1', '--json', str(out)]) == 0
    lines = json.loads(out.read_text())['lines']
    assert [(line['method'], line['beams']) for line in lines] == [
        ('ours', 1), ('vision_encoder_decoder', 1), ('ratio', 1),
        ('ours', 2), ('vision_encoder_decoder', 2), ('ratio', 2)]
    for ours, baseline, ratio in (lines[:3], lines[3:]):
        assert ratio['captions_per_s'] == round(ours['captions_per_s'] / baseline['captions_per_s'], 3) or \
            abs(ratio['captions_per_s'] - ours['captions_per_s'] / baseline['captions_per_s']) < 0.01
    assert capsys.readouterr().out.count('"method"') == 6
