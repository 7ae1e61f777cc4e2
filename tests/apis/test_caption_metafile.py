"""model_zoo/caption/metafile.yml (not imported by model-index.yml, so the zoo's tests do not read it): its
configs exist and build captioners, every result says whose it is, WenLan's are WenLan's published
numbers, r2d2lib's use CaptionMetric's keys and equal what docs/captioning.md prints."""
import re
from pathlib import Path

import yaml
from mmengine.config import Config

ROOT = Path(__file__).parents[2]
METAFILE = ROOT / 'model_zoo' / 'caption' / 'metafile.yml'
CAPTION_KEYS = {'BLEU-1', 'BLEU-4', 'METEOR', 'ROUGE-L', 'CIDEr-D'}
WENLAN_AIC_ICC = {'BLEU': 66.1, 'METEOR': 41.1, 'ROUGE-L': 71.9, 'CIDEr': 220.7}  # arXiv 2103.06561


def models():
    return yaml.safe_load(METAFILE.read_text(encoding='utf-8'))['Models']


def test_every_config_exists_and_builds_a_captioner():
    configs = {model['Config'] for model in models()}
    assert configs == {p.relative_to(ROOT).as_posix() for p in (ROOT / 'configs' / 'caption').glob('*.py')}
    for path in configs:
        assert Config.fromfile(str(ROOT / path)).model.type == 'ImageCaptioner', path


def test_every_result_says_whose_it_is_and_holds_its_numbers():
    docs = (ROOT / 'docs' / 'captioning.md').read_text(encoding='utf-8')
    sources = []
    for model in models():
        for result in model['Results'] or []:
            source = result['Source']
            sources.append(source.split(':')[0].split(' ')[0])
            if source.startswith("WenLan's"):
                assert result['Metrics'] == WENLAN_AIC_ICC and result['Dataset'] == 'AIC-ICC'
                assert 'not measured' in source
            else:
                assert source.startswith("r2d2lib's: python tools/caption_demo.py --seed ")
                assert set(result['Metrics']) == CAPTION_KEYS
                seed = re.search(r'--seed (\d+)', source).group(1)
                block = docs[docs.index(f'seed {seed}  '):]
                row = re.search(r'generated \(beam 3\)\s+([\d.\s]+)\n', block).group(1).split()
                assert [float(v) for v in row] == [result['Metrics'][k] for k in
                                                   ('BLEU-1', 'BLEU-4', 'METEOR', 'ROUGE-L', 'CIDEr-D')]
    assert sorted(set(sources)) == ["WenLan's", "r2d2lib's"]
