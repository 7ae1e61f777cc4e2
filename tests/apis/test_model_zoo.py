"""The model zoo: metafiles consistent with configs, converters, the Hub org and the paper; get_model,
the generated docs page and tools/publish_to_hub.py."""
import copy
import importlib.util
import json
import math
import re
from pathlib import Path

import huggingface_hub
import pytest
import torch
import yaml
from huggingface_hub.utils import validate_repo_id

import r2d2lib
from r2d2lib.apis import HUB_ORG, get_model, get_model_info, list_models
from r2d2lib.apis.model_zoo import (
    ModelZooError,
    get_model_config,
    load_model_index,
    model_card_metadata,
)
from r2d2lib.converters.building import expected_shapes
from r2d2lib.converters.official_r2d2 import inference_model_config
from r2d2lib.io import PretrainedConfigError
from r2d2lib.io.model_card import render_model_card
from r2d2lib.models.vlp import DualEncoderModel, R2D2Model
from r2d2lib.registry import MODELS

torch.set_num_threads(1)

ROOT = Path(__file__).parents[2]
ZOO = ROOT / 'model_zoo'
PAPER_TITLE = 'Zero and R2D2: A Large-scale Chinese Cross-modal Benchmark and A Vision-Language Framework'
RECALLS = ('i2t_R@1', 'i2t_R@5', 'i2t_R@10', 't2i_R@1', 't2i_R@5', 't2i_R@10')
# ViT width and patch of the image encoder each metafile names
VITS = {'ViT-B/16': (768, 16), 'ViT-L/14': (1024, 14)}
ALL = ['prd2_vitl_250m', 'r2d2_vitb_2.3m', 'r2d2_vitb_23m', 'r2d2_vitb_23m_ft-flickr30k-cna',
       'r2d2_vitb_23m_ft-icm', 'r2d2_vitb_23m_ft-icr', 'r2d2_vitb_23m_ft-iqm', 'r2d2_vitb_23m_ft-iqr',
       'r2d2_vitl_2.3m', 'r2d2_vitl_23m', 'r2d2_vitl_250m']


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def raw_models():
    """(metafile, entry) of every model, read straight from the YAML files."""
    index = yaml.safe_load((ZOO / 'model-index.yml').read_text())
    return [(rel, model) for rel in index['Import']
            for model in yaml.safe_load((ZOO / rel).read_text())['Models']]


# ----------------------------------------------------------------------------- metafiles
def test_the_zoo_lists_the_papers_and_the_releases_models():
    assert [name for name in list_models() if '/' not in name] == ALL
    assert list_models() == r2d2lib.list_models()
    assert list_models('r2d2_vitb*') == [n for n in ALL if n.startswith('r2d2_vitb')]
    assert len(list_models('r2d2_vitb*')) == 7
    assert list_models('*_ft-*') == ['r2d2_vitb_23m_ft-flickr30k-cna', 'r2d2_vitb_23m_ft-icm',
                                     'r2d2_vitb_23m_ft-icr', 'r2d2_vitb_23m_ft-iqm', 'r2d2_vitb_23m_ft-iqr']
    assert list_models('prd2_*') == ['prd2_vitl_250m'] and list_models('vit*') == []


def test_every_architecture_config_is_listed_and_builds_by_name():
    configs = sorted(p.relative_to(ROOT / 'configs').with_suffix('').as_posix()
                     for p in (ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts)
    assert [name for name in list_models() if '/' in name] == configs
    assert {'clip/clip_vitb_2.3m', 'brivl/brivl_vitb_2.3m', 'demo/r2d2_tiny_shapes',
            'r2d2/finetune/vitl_23m_icm', 'chinese_clip/chinese_clip_vitb16'} <= set(list_models())
    assert list_models('demo/*') == [c for c in configs if c.startswith('demo/')]
    cfg = get_model_config('clip/clip_vitb_2.3m')  # the config's architecture, no objective, no downloads
    assert cfg['type'] == 'DualEncoderModel' and cfg['temperature']['type'] == 'LogitScale'
    assert 'objective' not in cfg and cfg['image_encoder']['pretrained'] is None
    with torch.device('meta'):
        assert type(MODELS.build(cfg)).__name__ == 'DualEncoderModel'
    with pytest.raises(ValueError, match='clip/clip_vitb_2.3m is an architecture config: no released'):
        get_model('clip/clip_vitb_2.3m', pretrained=True)


def test_list_pretrained_names_the_weights_and_where_they_come_from():
    rows = r2d2lib.list_pretrained()
    released = {model['Name']: model for _, model in raw_models() if model.get('Weights')}
    assert [name for name, _, _ in rows] == sorted(released)
    for name, tag, source in rows:
        assert source == f'{HUB_ORG}/{name}' == released[name]['Weights']
        assert tag == ('official' if released[name].get('Converted From') else 'r2d2lib')
    assert r2d2lib.list_pretrained('prd2*') == [('prd2_vitl_250m', 'official', f'{HUB_ORG}/prd2_vitl_250m')]


def test_names_are_unique_across_metafiles(tmp_path):
    names = [model['Name'] for _, model in raw_models()]
    assert len(names) == len(set(names)) == 11
    # the loader refuses a duplicate
    (tmp_path / 'a.yml').write_text((ZOO / 'prd2' / 'metafile.yml').read_text())
    (tmp_path / 'b.yml').write_text((ZOO / 'prd2' / 'metafile.yml').read_text())
    (tmp_path / 'index.yml').write_text('Import:\n  - a.yml\n  - b.yml\n')
    with pytest.raises(ModelZooError, match="'prd2_vitl_250m' is defined twice"):
        load_model_index(tmp_path / 'index.yml')


@pytest.mark.parametrize('name', ALL)
def test_config_exists_and_builds_the_inference_form_that_the_official_weights_fit(name):
    info = get_model_info(name)
    assert (ROOT / info['Config']).is_file()
    cfg = get_model_config(name)
    with torch.device('meta'):
        model = MODELS.build({**cfg, '_scope_': 'r2d2lib'})
    assert type(model).__name__ == ('DualEncoderModel' if name.startswith('prd2') else 'R2D2Model')
    assert model.objective is None  # the architecture only (fine-tuned for matching or not: same tensors)
    width, patch = VITS[info['Metadata']['Image Encoder']]
    assert (model.image_encoder.width, model.image_encoder.patch_size) == (width, patch)
    assert name.split('_')[1] == {768: 'vitb', 1024: 'vitl'}[width]  # the name says the ViT
    # exactly the tensors (names and shapes) the converter maps the official checkpoint of Arch onto
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == expected_shapes(inference_model_config(info['Metadata']['Arch']))


def test_a_collection_without_a_name_is_named_by_its_file(tmp_path):
    (tmp_path / 'm.yml').write_text('Collections:\n  - Metadata: {}\nModels: []\n')
    (tmp_path / 'index.yml').write_text('Import:\n  - m.yml\n')
    with pytest.raises(ModelZooError, match=r'm\.yml: every entry of Collections needs a Name'):
        load_model_index(tmp_path / 'index.yml')


def test_hub_ids_are_the_one_org_and_the_model_name_and_only_for_released_checkpoints(tmp_path):
    released = set()
    for _, model in raw_models():
        if 'Weights' in model:
            released.add(model['Name'])
            assert model['Weights'] == f"{HUB_ORG}/{model['Name']}"
            validate_repo_id(model['Weights'])
            source = model['Converted From']
            assert source['Code'] == 'https://github.com/yuxie11/R2D2'
            assert source['Weights'].startswith('https://drive.google.com/file/d/')
        else:
            assert 'Converted From' not in model
    # the official release: R2D2 ViT-L 23M and 250M, PRD2 ViT-L 250M, five fine-tuned ViT-B (23M)
    assert released == {'r2d2_vitl_23m', 'r2d2_vitl_250m', 'prd2_vitl_250m'} | set(list_models('*_ft-*'))
    # a metafile with another organisation is refused by the loader
    text = (ZOO / 'prd2' / 'metafile.yml').read_text()
    (tmp_path / 'm.yml').write_text(text.replace(f'Weights: {HUB_ORG}/', 'Weights: someone/'))
    (tmp_path / 'index.yml').write_text('Import:\n  - m.yml\n')
    with pytest.raises(ModelZooError, match=f"'{HUB_ORG}/prd2_vitl_250m'"):
        load_model_index(tmp_path / 'index.yml')


def test_results_are_the_papers_numbers_in_percent():
    for _, model in raw_models():
        if model['Name'].endswith('250m'):  # the paper (v3) reports no 250M model
            assert model['Results'] is None
            continue
        assert model['Results'], model['Name']
        for result in model['Results']:
            metrics = result['Metrics']
            assert metrics and all(isinstance(v, float) and 0 <= v <= 100 for v in metrics.values())
            if 'Matching' in result['Task']:
                assert set(metrics) == {'AUC'}
                continue
            recalls = [metrics[k] for k in RECALLS if k in metrics]
            # all six recalls, or text-to-image only for MUGE; R@M is their mean (as rounded in the paper)
            assert len(recalls) == (3 if result['Dataset'] == 'MUGE' else 6), (model['Name'], result)
            mean = sum(recalls) / len(recalls)
            assert math.isclose(mean, metrics['R@M'], abs_tol=0.1), (model['Name'], result)
    # spot checks against Tables 1, 2 and 4
    info = get_model_info('r2d2_vitl_23m')
    rows = {(r['Task'], r['Dataset']): r['Metrics'] for r in info['Results']}
    assert rows['Image-Text Retrieval (after fine-tuning)', 'Flickr30k-CN']['i2t_R@10'] == 100.0  # Table 1
    assert rows['Image-Text Matching (after fine-tuning)', 'IQM'] == {'AUC': 83.62}  # Table 2
    assert rows['Image-Text Matching (zero-shot)', 'ICM'] == {'AUC': 87.4}  # Table 4
    assert rows['Image-Text Retrieval (zero-shot)', 'AIC-ICC']['t2i_R@1'] == 10.6  # Table 4
    assert len(rows) == 9 + 8  # 7 retrieval + 2 matching sets fine-tuned, 8 zero-shot
    assert get_model_info('r2d2_vitb_2.3m')['Results'][3]['Metrics'] == {
        't2i_R@1': 36.8, 't2i_R@5': 65.9, 't2i_R@10': 78.1, 'R@M': 60.3}  # Table 1, MUGE


def test_fine_tuned_checkpoints_repeat_their_backbones_row_and_name_their_fine_tuning_config():
    backbone = {(r['Task'], r['Dataset']): r['Metrics'] for r in get_model_info('r2d2_vitb_23m')['Results']}
    for name in list_models('*_ft-*'):
        info = get_model_info(name)
        meta = info['Metadata']
        assert meta['Fine-tuned From'] == 'r2d2_vitb_23m'
        [result] = info['Results']
        config = result['Dataset'].lower().replace('-', '_')
        assert info['Config'] == f'configs/r2d2/finetune/vitb_23m_{config}.py'
        assert 'Config Stand-in' not in meta
        assert name.endswith(result['Dataset'].lower())
        assert meta['Training Data'][-1] == f"{result['Dataset']} (train)"
        assert result['Metrics'] == backbone[f"{result['Task']} (after fine-tuning)", result['Dataset']]


def test_model_info_inherits_paper_and_metadata_from_the_collection():
    info = get_model_info('prd2_vitl_250m')
    assert info['Paper'] == dict(Title=PAPER_TITLE, URL='https://arxiv.org/abs/2205.03860')
    assert info['Metadata']['Training Data'] == ['Zero (250M pairs)']  # the model's own wins
    assert 'Architecture' in info['Metadata'] and '@article{xie2022zero' in info['Citation']
    info['Metadata']['Arch'] = 'changed'  # a copy
    assert get_model_info('prd2_vitl_250m')['Metadata']['Arch'] == 'prd2_vitl'


def test_unknown_names_raise_key_error_with_close_names():
    with pytest.raises(KeyError, match=r"'r2d2_vitb_23' is not a model-zoo model; close names: "
                                       r'r2d2_vitb_23m, r2d2_vitb_2\.3m'):
        get_model('r2d2_vitb_23')
    with pytest.raises(KeyError, match='prd2_vitl_250m'):
        get_model_info('prd2_vit_l_250m')
    with pytest.raises(KeyError, match=r"'clip' is not a model-zoo model \(list_models"):
        get_model('clip')


def test_a_missing_model_index_says_where_the_zoo_lives(tmp_path, monkeypatch):
    monkeypatch.setenv('R2D2LIB_MODEL_INDEX', str(tmp_path / 'none.yml'))
    with pytest.raises(FileNotFoundError, match='source checkout'):
        list_models()


def test_docs_page_is_up_to_date(tmp_path, capsys):
    tool = load_tool('model_zoo_docs')
    assert tool.main(['--check']) == 0, 'run python tools/model_zoo_docs.py'
    text = (ROOT / 'docs' / 'model_zoo.md').read_text()
    assert ('| `r2d2_vitb_23m_ft-icr` | [configs/r2d2/finetune/vitb_23m_icr.py]'
            '(../configs/r2d2/finetune/vitb_23m_icr.py) |') in text
    assert '| `r2d2_vitl_23m` | Image-Text Matching (zero-shot) | ICM |' + ' - |' * 7 + ' 87.4 |' in text
    stale = tmp_path / 'model_zoo.md'
    stale.write_text(text.replace('87.4', '87.5'))
    assert tool.main(['--check', '--out', str(stale)]) == 1
    assert '-| `r2d2_vitl_23m` | Image-Text Matching (zero-shot) | ICM' in capsys.readouterr().out


# ----------------------------------------------------------------------------- get_model
def tiny_overrides(vocab_file):
    """Overrides that shrink r2d2_vitb_23m's config to a few thousand parameters."""
    return dict(
        data_preprocessor=dict(image_size=32, max_length=16,
                               tokenizer=dict(_delete_=True, vocab_file=str(vocab_file))),
        image_encoder=dict(config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=32, patch_size=8)),
        text_encoder=dict(config=dict(vocab_size=64, hidden_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, intermediate_size=64,
                                      max_position_embeddings=64)),
        text_image_encoder=dict(width=32, kv_width=48, num_layers=1, num_heads=2),
        image_text_encoder=dict(width=32, kv_width=32, num_layers=1, num_heads=2),
        embed_dim=24)


def test_get_model_builds_the_inference_form_with_overrides(toy_data):
    torch.manual_seed(0)
    model = get_model('r2d2_vitb_23m', **tiny_overrides(toy_data / 'vocab.txt'))
    assert type(model) is R2D2Model and not model.training
    assert model.objective is None
    assert model.image_encoder.width == 48 and model.vision_proj.out_features == 24
    assert model.image_encoder.frozen  # the config's settings that were not overridden stay
    assert type(model.temperature).__name__ == 'Temperature'
    pixels = torch.rand(2, 3, 32, 32)
    tokens = model.tokenize(['红色的圆形', '蓝色的方形'])
    with torch.no_grad():
        similarity = model.encode_image(pixels) @ model.encode_text(**tokens).t()
        assert similarity.shape == (2, 2) and model.match(pixels, **tokens).shape == (2,)


def test_pretrained_needs_released_weights_and_no_overrides(toy_data, tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
    with pytest.raises(ValueError, match=r'r2d2_vitb_2\.3m has no released weights.*r2d2/vitb_2\.3m\.py'):
        get_model('r2d2_vitb_2.3m', pretrained=True)
    with pytest.raises(FileNotFoundError, match=f"'{HUB_ORG}/r2d2_vitl_250m'.*HF_HUB_OFFLINE=1"):
        get_model('r2d2_vitl_250m', pretrained=True, cache_dir=tmp_path)  # offline, not cached
    with pytest.raises(TypeError, match=r"\['embed_dim'\]"):
        get_model('r2d2_vitl_250m', pretrained=True, embed_dim=8)


@pytest.fixture
def tiny_r2d2(tiny_model_cfg):
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(tiny_model_cfg))
    model.init_weights()
    return model.eval()


def test_pretrained_from_a_local_folder_and_from_the_hf_cache(tiny_r2d2, tiny_model_cfg, tmp_path,
                                                              monkeypatch):
    folder = tiny_r2d2.save_pretrained(tmp_path / 'export')
    loaded = get_model('r2d2_vitb_23m_ft-icr', pretrained=str(folder))
    assert type(loaded) is R2D2Model and not loaded.training
    state = tiny_r2d2.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
    # pretrained=True: the model's Hub id, resolved offline in the Hugging Face cache
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
    commit = 'b' * 40
    repo = tmp_path / 'cache' / f'models--{HUB_ORG}--r2d2_vitb_23m_ft-icr'
    tiny_r2d2.save_pretrained(repo / 'snapshots' / commit)
    (repo / 'refs').mkdir()
    (repo / 'refs' / 'main').write_text(commit)
    cached = get_model('r2d2_vitb_23m_ft-icr', pretrained=True, cache_dir=tmp_path / 'cache',
                       dtype='bfloat16')
    assert cached.text_proj.weight.dtype == torch.bfloat16
    assert torch.equal(cached.text_proj.weight, tiny_r2d2.text_proj.weight.to(torch.bfloat16))
    # the folder must hold the zoo model's architecture
    with pytest.raises(PretrainedConfigError, match='holds a R2D2Model, but prd2_vitl_250m is a DualEncoder'):
        get_model('prd2_vitl_250m', pretrained=folder)
    dual_cfg = {k: v for k, v in copy.deepcopy(tiny_model_cfg).items()
                if k not in ('text_image_encoder', 'image_text_encoder')}
    dual = MODELS.build({**dual_cfg, 'type': 'DualEncoderModel', 'objective': None})
    dual_folder = dual.save_pretrained(tmp_path / 'dual')
    assert type(get_model('prd2_vitl_250m', pretrained=dual_folder)) is DualEncoderModel
    with pytest.raises(PretrainedConfigError,
                       match='holds a DualEncoderModel, but r2d2_vitl_250m is a R2D2Model'):
        get_model('r2d2_vitl_250m', pretrained=dual_folder)


# ----------------------------------------------------------------------------- model card, publish
def test_model_card_of_a_zoo_model_has_the_paper_and_its_results():
    config = dict(architecture='R2D2Model', model=dict(type='R2D2Model', text_image_encoder={}),
                  preprocessing=dict(image_size=224, mean=[0.5] * 3, std=[0.5] * 3, max_length=64))
    card = render_model_card(config, model_card_metadata('r2d2_vitl_23m'))
    assert f'[{PAPER_TITLE}](https://arxiv.org/abs/2205.03860)' in card
    assert '| Task | Dataset | ' + ' | '.join(RECALLS) + ' | R@M | AUC |\n' in card
    assert '| Image-Text Matching (zero-shot) | ICM |  |  |  |  |  |  |  | 87.4 |' in card
    assert "R2D2Model.from_pretrained('r2d2lib/r2d2_vitl_23m')" in card
    assert 'Converted from the official checkpoint' in card and '@article{xie2022zero' in card
    assert '\nlicense: other\n' in card  # the official release states no license
    own = model_card_metadata('r2d2_vitl_23m', repo_id='me/mine', official=False)
    assert own['repo_id'] == 'me/mine' and 'not the official checkpoint' in own['description']
    assert 'not measured on these weights' in own['description'] and own['license'] == 'apache-2.0'


@pytest.fixture
def training_checkpoint(tiny_full_cfg, tmp_path):
    """A tiny R2D2 with the full objective (teacher, queue, centres) saved as mmengine saves it, and its
    config file."""
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(tiny_full_cfg))
    model.init_weights()
    path = tmp_path / 'iter_2.pth'
    torch.save(dict(meta=dict(iter=2, epoch=0), state_dict=model.state_dict()), path)
    config = tmp_path / 'tiny_r2d2.py'
    config.write_text(f'model = {tiny_full_cfg!r}\n')
    return model, path, config


def test_publish_dry_run_from_a_training_checkpoint(training_checkpoint, tmp_path, capsys, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError('--dry-run reached the network')
    for method in ('create_repo', 'upload_folder', 'create_branch'):
        monkeypatch.setattr(huggingface_hub.HfApi, method, no_network)
    model, path, config = training_checkpoint
    out = tmp_path / 'out'
    tool = load_tool('publish_to_hub')
    assert tool.main([str(path), '--config', str(config), '--model', 'r2d2_vitb_23m',
                      '--repo-id', 'me/tiny', '--dry-run', '--out', str(out)]) == 0
    listing = capsys.readouterr().out
    assert 'would upload to me/tiny' in listing
    files = {line.split()[0] for line in listing.splitlines()[1:-1]}
    assert {'config.json', 'model.safetensors', 'README.md', 'tokenizer.json',
            'tokenizer_config.json'} <= files
    assert files == {p.name for p in out.iterdir()}
    size = (out / 'model.safetensors').stat().st_size
    assert f'{size / 1024:.1f} KiB' in listing or f'{size / 1024 ** 2:.1f} MiB' in listing
    card = (out / 'README.md').read_text()
    assert PAPER_TITLE in card and '| Image-Text Retrieval (after fine-tuning) | ICR | 43.4 |' in card
    assert 'not the official checkpoint' in card and "from_pretrained('me/tiny')" in card
    loaded = r2d2lib.load_model(out)  # strict: the export is the architecture
    assert loaded.objective is None
    assert torch.equal(loaded.text_proj.weight, model.text_proj.weight)


def test_publish_a_converted_folder_by_zoo_name(tiny_r2d2, tmp_path, capsys, monkeypatch):
    # as tools/convert/official_r2d2.py writes it: the source file recorded in config.json
    folder = tiny_r2d2.save_pretrained(tmp_path / 'converted', model_card=dict(converted_from='icm.pth'))
    tool = load_tool('publish_to_hub')
    out = tmp_path / 'out'
    assert tool.main(['r2d2_vitb_23m_ft-icm', '--src', str(folder), '--dry-run', '--out', str(out)]) == 0
    assert f'would upload to {HUB_ORG}/r2d2_vitb_23m_ft-icm' in capsys.readouterr().out
    card = (out / 'README.md').read_text()
    assert 'Converted from the official checkpoint (https://drive.google.com/' in card
    assert 'Weights converted from `icm.pth`' in card and '\nlicense: other\n' in card
    assert json.loads((out / 'config.json').read_text())['converted_from'] == 'icm.pth'
    assert '| Image-Text Matching | ICM | 86.47 |' in card
    # without --dry-run: push_to_hub with the metafile's repo id and card
    pushed = {}
    monkeypatch.setattr(r2d2lib.io, 'push_to_hub',
                        lambda model, repo_id, **kw: pushed.update(repo_id=repo_id, **kw))
    assert tool.main(['r2d2_vitb_23m_ft-icm', '--src', str(folder)]) == 0
    assert pushed['repo_id'] == f'{HUB_ORG}/r2d2_vitb_23m_ft-icm'
    assert pushed['model_card']['results'] == [dict(Task='Image-Text Matching', Dataset='ICM', AUC=86.47)]


def test_publish_calls_only_a_recorded_conversion_official(tiny_r2d2, tmp_path):
    folder = tiny_r2d2.save_pretrained(tmp_path / 'mine')  # a folder of r2d2lib-trained weights
    out = tmp_path / 'out'
    assert load_tool('publish_to_hub').main(['r2d2_vitb_23m', '--src', str(folder), '--dry-run',
                                             '--out', str(out)]) == 0
    card = (out / 'README.md').read_text()
    assert 'Converted from the official checkpoint' not in card and 'not the official checkpoint' in card
    assert '\nlicense: apache-2.0\n' in card
    assert 'converted_from' not in json.loads((out / 'config.json').read_text())


def test_publish_unpickles_fully_only_with_allow_pickle(training_checkpoint, tmp_path):
    import argparse
    model, path, config = training_checkpoint
    torch.save(dict(meta=dict(iter=2), state_dict=model.state_dict(),  # an object beyond plain data
                    extra=argparse.Namespace(note='not weights-only')), path)
    tool = load_tool('publish_to_hub')
    argv = [str(path), '--config', str(config), '--repo-id', 'me/tiny', '--dry-run',
            '--out', str(tmp_path / 'o')]
    refused = re.escape(f'error: {path} cannot be loaded weights-only') + r'(.|\n)*--allow-pickle'
    with pytest.raises(SystemExit, match=refused):
        tool.main(argv)
    assert not (tmp_path / 'o').exists()
    assert tool.main(argv + ['--allow-pickle']) == 0
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(SystemExit, match=re.escape(f'error: {path} is not a readable PyTorch checkpoint')):
        tool.main(argv + ['--allow-pickle'])


def test_publish_refuses_what_it_cannot_resolve(training_checkpoint, tmp_path):
    _, path, _ = training_checkpoint
    tool = load_tool('publish_to_hub')
    with pytest.raises(SystemExit, match='pass --config'):
        tool.main([str(path), '--repo-id', 'me/x', '--dry-run'])
    with pytest.raises(SystemExit, match='give the checkpoint or folder to publish with --src'):
        tool.main(['r2d2_vitl_250m', '--dry-run'])
    with pytest.raises(SystemExit, match=r'not a file or folder, and .*close names: r2d2_vitl_250m'):
        tool.main(['r2d2_vitl_25m', '--dry-run'])
    with pytest.raises(SystemExit, match='--repo-id'):
        tool.main([str(path), '--config', str(tmp_path / 'tiny_r2d2.py')])
