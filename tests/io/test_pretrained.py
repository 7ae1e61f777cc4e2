"""save_pretrained, from_pretrained / load_model, push_to_hub, load_weights: exact round trips, strict
errors."""
import argparse
import copy
import json
import os
import re

import huggingface_hub
import pytest
import torch
import yaml
from mmengine.dataset import default_collate
from mmengine.registry import init_default_scope
from safetensors.torch import load_file, save_file

import r2d2lib
from r2d2lib import DualEncoderModel, R2D2Model, load_model
from r2d2lib.io import PickleRefusedError, PretrainedConfigError, PretrainedLoadError, save_pretrained
from r2d2lib.io import load_weights as load_local_checkpoint
from r2d2lib.io.model_card import render_model_card
from r2d2lib.registry import DATASETS, MODELS

torch.set_num_threads(1)
init_default_scope('r2d2lib')

TRAINING_STATE = ('objective.', )
TEXTS = ['右上角有一个红色的大正方形', '左下角有一个绿色的小圆形 ABC', '[SEP] 蓝色']


@pytest.fixture
def batch(toy_data, pipeline32):
    """8 collated training pairs of the toy corpus (2 captions for each of 4 images)."""
    dataset = DATASETS.build(dict(type='RetrievalDataset', data_root=str(toy_data),
                                  ann_file='train.jsonl', pipeline=pipeline32))
    return default_collate([dataset[i] for i in range(8)])


def trained(cfg, batch, steps=2):
    """Built, initialised and trained ``steps`` SGD steps (teacher moved, queue filled)."""
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(cfg))
    model.init_weights()
    initial = model.text_proj.weight.detach().clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(steps):
        losses = model(**model.data_preprocessor(batch, True), mode='loss')
        sum(v for k, v in losses.items() if k.startswith('loss_')).backward()
        optimizer.step()
        optimizer.zero_grad()
        if getattr(model.objective, 'teacher', None) is not None:
            model.objective.momentum_update(model)
    assert not torch.equal(initial, model.text_proj.weight)  # the export is not the initialisation
    return model.eval()


TEMPERATURES = dict(GCPRLoss=dict(type='Temperature'), InfoNCELoss=dict(type='LogitScale'),
                    MoCoLoss=dict(type='Temperature', learnable=False))


def dual_encoder_cfg(cfg, loss='GCPRLoss'):
    cross_encoders = ('text_image_encoder', 'image_text_encoder')
    cfg = {k: v for k, v in copy.deepcopy(cfg).items() if k not in cross_encoders}
    objective = dict(type='ContrastiveObjective', contrastive=dict(type=loss))
    if loss == 'MoCoLoss':
        objective.update(teacher=dict(type='MomentumTeacher'),
                         queue=dict(type='FeatureQueue', size=16, decay=1.0))
    cfg.update(type='DualEncoderModel', temperature=TEMPERATURES[loss], objective=objective)
    return cfg


def assert_same_outputs(a, b, batch):
    inputs = a.data_preprocessor(batch, False)['inputs']
    images, ids, mask = inputs['images'], inputs['input_ids'], inputs['attention_mask']
    with torch.no_grad():
        assert torch.equal(a.encode_image(images), b.encode_image(images))
        assert torch.equal(a.encode_text(ids, mask), b.encode_text(ids, mask))
        if isinstance(a, R2D2Model):
            assert torch.equal(a.match(images, ids, mask), b.match(images, ids, mask))
    for key in ('input_ids', 'attention_mask'):  # the saved tokenizer tokenises identically
        assert torch.equal(a.tokenize(TEXTS)[key], b.tokenize(TEXTS)[key])


def kept_state(model):
    return {k: v for k, v in model.state_dict().items() if not k.startswith(TRAINING_STATE)}


def tokenizer_files(model, tmp_path):
    out = tmp_path / 'tokenizer_only'
    return {os.path.basename(p) for p in model.data_preprocessor.tokenizer.save_pretrained(str(out))}


def test_model_config_records_the_constructor_arguments_and_rebuilds_the_architecture(tiny_full_cfg):
    model = MODELS.build(copy.deepcopy(tiny_full_cfg))
    assert model.model_config == tiny_full_cfg  # R2D2's own and the dual encoder's (**kwargs) arguments
    rebuilt = MODELS.build(model.model_config)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == \
        {k: v.shape for k, v in model.state_dict().items()}
    cfg = copy.deepcopy(tiny_full_cfg)
    positional = R2D2Model(cfg.pop('image_encoder'), cfg.pop('text_encoder'), cfg.pop('text_image_encoder'),
                           cfg.pop('image_text_encoder'), **{k: v for k, v in cfg.items() if k != 'type'})
    assert positional.model_config == tiny_full_cfg
    assert copy.deepcopy(model).model_config == tiny_full_cfg


def test_r2d2_round_trip_is_exact_and_leaves_out_the_training_state(tiny_full_cfg, batch, tmp_path):
    model = trained(tiny_full_cfg, batch)
    folder = model.save_pretrained(tmp_path / 'export')
    assert set(os.listdir(folder)) == {'config.json', 'model.safetensors', 'README.md'} | \
        tokenizer_files(model, tmp_path)
    loaded = R2D2Model.from_pretrained(folder)
    assert type(loaded) is R2D2Model and not loaded.training and loaded.objective is None
    expected = kept_state(model)
    assert any(k.startswith(TRAINING_STATE) for k in model.state_dict())  # there was something to strip
    assert set(loaded.state_dict()) == set(expected) == set(load_file(str(folder / 'model.safetensors')))
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert_same_outputs(model, loaded, batch)

    config = json.loads((folder / 'config.json').read_text())
    assert config['architecture'] == 'R2D2Model' and config['r2d2lib_version'] == r2d2lib.__version__
    m = config['model']
    assert 'objective' not in m  # the architecture only: nothing of the training recipe
    assert {k: v for k, v in m.items() if k != 'data_preprocessor'} == \
        {k: v for k, v in tiny_full_cfg.items() if k not in ('objective', 'data_preprocessor')}
    learnt = model.temperature.tau.item()  # the temperature reached is in the weights
    assert learnt != pytest.approx(0.07)
    assert torch.equal(loaded.temperature.temp, model.temperature.temp)
    assert m['data_preprocessor']['tokenizer'] == {'name_or_path': '.'}
    assert str(tmp_path.parent) not in (folder / 'config.json').read_text()  # no absolute paths
    assert config['preprocessing'] == dict(image_size=32, mean=[0.48145466, 0.4578275, 0.40821073],
                                           std=[0.26862954, 0.26130258, 0.27577711], max_length=40)
    # the base class and the function load any r2d2lib model: the class config.json names
    assert type(DualEncoderModel.from_pretrained(folder)) is R2D2Model
    assert type(load_model(str(folder))) is R2D2Model


def test_from_the_hugging_face_cache_offline(tiny_full_cfg, batch, tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
    model = trained(tiny_full_cfg, batch)
    commit = 'a' * 40
    repo = tmp_path / 'cache' / 'models--org--tiny-r2d2'
    model.save_pretrained(repo / 'snapshots' / commit)
    (repo / 'refs').mkdir()
    (repo / 'refs' / 'main').write_text(commit)
    loaded = R2D2Model.from_pretrained('org/tiny-r2d2', cache_dir=tmp_path / 'cache')
    assert_same_outputs(model, loaded, batch)
    by_commit = load_model('org/tiny-r2d2', revision=commit, cache_dir=tmp_path / 'cache')
    assert_same_outputs(model, by_commit, batch)
    with pytest.raises(FileNotFoundError, match=r"'org/other'.*HF_HUB_OFFLINE=1"):
        R2D2Model.from_pretrained('org/other', cache_dir=tmp_path / 'cache')
    with pytest.raises(FileNotFoundError, match='neither an existing folder nor a Hub repo id'):
        R2D2Model.from_pretrained(str(tmp_path / 'no' / 'such' / 'folder'))
    with pytest.raises(ValueError, match='is a file'):
        R2D2Model.from_pretrained(repo / 'refs' / 'main')


@pytest.fixture
def saved(tiny_full_cfg, batch, tmp_path):
    """A trained tiny R2D2 and the folder it was saved to."""
    model = trained(tiny_full_cfg, batch, steps=1)
    return model, model.save_pretrained(tmp_path / 'export')


def edit_weights(folder, edit):
    path = folder / 'model.safetensors'
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path))


@pytest.mark.parametrize('edit,message', [
    (lambda s: s.pop('vision_proj.bias'), r'missing keys \(1\): vision_proj\.bias'),
    (lambda s: s.update({'extra_head.weight': torch.zeros(2)}), r'unexpected keys \(1\): extra_head\.weight'),
    (lambda s: s.update({'text_proj.weight': torch.zeros(24, 33)}),
     r'shape mismatches \(1\): text_proj\.weight \(checkpoint \(24, 33\) vs model \(24, 32\)\)'),
], ids=['missing', 'unexpected', 'shape'])
def test_strict_loading_names_the_offending_key_and_the_file(saved, edit, message):
    _, folder = saved
    edit_weights(folder, edit)
    with pytest.raises(PretrainedLoadError, match=message) as info:
        R2D2Model.from_pretrained(folder)
    assert str(folder / 'model.safetensors') in str(info.value)


def test_a_truncated_weights_file_is_named(saved):
    _, folder = saved
    path = folder / 'model.safetensors'
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(PretrainedLoadError, match='not a readable safetensors file') as info:
        R2D2Model.from_pretrained(folder)
    assert str(path) in str(info.value)


@pytest.mark.parametrize('edit,message', [
    (lambda c: c.update(architecture='BertModel'), r"architecture: 'BertModel' is not an r2d2lib model"),
    (lambda c: c.pop('model'), r'has no "architecture" string and "model" object'),
    (lambda c: c.pop('architecture'), r'has no "architecture" string and "model" object'),
    (lambda c: c['model'].pop('image_encoder'), r'"model" does not build a R2D2Model.*image_encoder'),
    (lambda c: c['model'].update(type='DualEncoderModel'), r"model\.type is 'DualEncoderModel'"),
], ids=['other-architecture', 'no-model', 'no-architecture', 'does-not-build', 'type-mismatch'])
def test_a_config_of_something_else_is_refused_naming_the_file_and_key(saved, edit, message):
    _, folder = saved
    path = folder / 'config.json'
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))
    with pytest.raises(PretrainedConfigError, match=message) as info:
        R2D2Model.from_pretrained(folder)
    assert 'config.json' in str(info.value)
    path.write_text('{"architecture": ')
    with pytest.raises(PretrainedConfigError, match='config.json is not valid JSON'):
        R2D2Model.from_pretrained(folder)


@pytest.mark.parametrize('loss', ['GCPRLoss', 'InfoNCELoss', 'MoCoLoss'])
def test_dual_encoder_round_trip_and_r2d2_refuses_it(tiny_model_cfg, batch, tmp_path, loss):
    model = trained(dual_encoder_cfg(tiny_model_cfg, loss), batch)
    folder = save_pretrained(model, tmp_path / 'dual')
    loaded = DualEncoderModel.from_pretrained(folder)
    assert type(loaded) is DualEncoderModel and loaded.objective is None
    assert_same_outputs(model, loaded, batch)
    expected = kept_state(model)
    assert type(loaded.temperature) is type(model.temperature)  # MoCo's fixed tau, CLIP's logit scale
    assert loaded.state_dict().keys() == expected.keys()
    assert all(torch.equal(v, expected[k]) for k, v in loaded.state_dict().items())
    with pytest.raises(PretrainedConfigError, match=f'{folder / "config.json"} describes DualEncoderModel, '
                                                    'not R2D2Model'):
        R2D2Model.from_pretrained(folder)
    assert 'model.match' not in (folder / 'README.md').read_text()


def test_init_time_settings_are_cleared_and_configs_that_json_cannot_hold_are_refused(tiny_model_cfg, batch,
                                                                                     tmp_path):
    model = trained(dual_encoder_cfg(tiny_model_cfg), batch, steps=1)
    cfg = model.model_config
    cfg['text_encoder'].update(pretrained='/data/weights/chinese-roberta-wwm-ext',
                               init_cfg=dict(type='Pretrained', checkpoint='/data/x.pth'))
    folder = save_pretrained(model, tmp_path / 'a', model_config=cfg)
    text_encoder = json.loads((folder / 'config.json').read_text())['model']['text_encoder']
    assert text_encoder['pretrained'] is None and text_encoder['init_cfg'] is None
    assert_same_outputs(model, DualEncoderModel.from_pretrained(folder), batch)
    cfg['data_preprocessor'] = model.data_preprocessor
    with pytest.raises(TypeError, match='model.data_preprocessor is a ImageTextDataPreprocessor'):
        save_pretrained(model, tmp_path / 'b', model_config=cfg)


def test_device_and_dtype(saved, batch):
    model, folder = saved
    loaded = R2D2Model.from_pretrained(folder, device='cpu', dtype='float64')
    assert {p.dtype for p in loaded.parameters()} == {torch.float64}
    inputs = loaded.data_preprocessor(batch, False)['inputs']
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_text(inputs['input_ids'], inputs['attention_mask']).float(),
                                   model.encode_text(inputs['input_ids'], inputs['attention_mask']))


def test_push_to_hub_creates_the_repo_and_uploads_the_saved_folder(saved, monkeypatch):
    model, _ = saved
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(('create_repo', repo_id, kwargs))
        return huggingface_hub.RepoUrl(f'https://huggingface.co/{repo_id}')

    def create_branch(self, repo_id, **kwargs):
        calls.append(('create_branch', repo_id, kwargs))

    def upload_folder(self, **kwargs):
        folder = kwargs['folder_path']
        files = {name: open(os.path.join(folder, name), 'rb').read() for name in os.listdir(folder)}
        calls.append(('upload_folder', kwargs.pop('repo_id'), dict(kwargs, files=files)))
        return 'commit-info'

    for name, fake in [('create_repo', create_repo), ('create_branch', create_branch),
                       ('upload_folder', upload_folder)]:
        monkeypatch.setattr(huggingface_hub.HfApi, name, fake)
    result = model.push_to_hub('org/tiny-r2d2', private=True, revision='v1', commit_message='tiny',
                               model_card=dict(title='Tiny R2D2'))
    assert result == 'commit-info'
    assert [c[:2] for c in calls] == [('create_repo', 'org/tiny-r2d2'), ('create_branch', 'org/tiny-r2d2'),
                                      ('upload_folder', 'org/tiny-r2d2')]
    assert calls[0][2]['exist_ok'] is True and calls[0][2]['private'] is True
    assert calls[1][2]['branch'] == 'v1'
    upload = calls[2][2]
    assert (upload['commit_message'], upload['revision'], upload['create_pr']) == ('tiny', 'v1', False)
    files = upload['files']
    assert {'config.json', 'model.safetensors', 'README.md', 'tokenizer_config.json'} <= set(files)
    assert 'objective' not in json.loads(files['config.json'])['model']
    card = files['README.md'].decode()
    assert "R2D2Model.from_pretrained('org/tiny-r2d2')" in card and '# Tiny R2D2' in card
    assert not os.path.exists(upload['folder_path'])  # a temporary folder


def test_a_local_pth_needs_the_pickle_opt_in_and_then_loads(saved, tmp_path):
    model, folder = saved
    path = tmp_path / 'iter_1.pth'
    torch.save(dict(meta=dict(iter=1), state_dict=model.state_dict(),  # an object beyond plain data
                    extra=argparse.Namespace(note='not weights-only')), path)
    target = R2D2Model.from_pretrained(folder)
    with torch.no_grad():
        target.text_proj.weight.zero_()
    with pytest.raises(PickleRefusedError, match=r'allow_pickle=True') as info:
        load_local_checkpoint(target, path)
    assert str(path) in str(info.value)
    dropped = load_local_checkpoint(target, path, allow_pickle=True)
    assert dropped and all(k.startswith(TRAINING_STATE) for k in dropped)
    assert set(dropped) == set(model.state_dict()) - set(kept_state(model))
    assert torch.equal(target.text_proj.weight, model.text_proj.weight)
    training = MODELS.build(model.model_config)  # has a teacher and a queue: loaded strictly, all keys
    assert load_local_checkpoint(training, path, allow_pickle=True) == []
    assert torch.equal(training.objective.queue.image_feats, model.objective.queue.image_feats)
    state = model.state_dict()
    state['extra.weight'] = torch.zeros(1)
    torch.save(dict(state_dict=state), path)
    with pytest.raises(PretrainedLoadError, match=r'unexpected keys \(1\): extra\.weight'):
        load_local_checkpoint(training, path, allow_pickle=True)


def test_a_weights_only_pth_needs_no_opt_in_and_a_truncated_one_is_named(saved, tmp_path):
    model, folder = saved
    path = tmp_path / 'epoch_1.pth'
    torch.save(dict(meta=dict(epoch=1, iter=8), state_dict={f'module.{k}': v for k, v in
                                                            model.state_dict().items()}), path)
    target = R2D2Model.from_pretrained(folder)
    with torch.no_grad():
        target.text_proj.weight.zero_()
    assert set(load_local_checkpoint(target, path)) == set(model.state_dict()) - set(kept_state(model))
    assert torch.equal(target.text_proj.weight, model.text_proj.weight)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(PretrainedLoadError, match='truncated or corrupt') as info:
        load_local_checkpoint(target, path, allow_pickle=True)
    assert str(path) in str(info.value)
    torch.save(dict(state_dict=dict(model.state_dict(), step='eight')), path)
    with pytest.raises(TypeError, match=re.escape(f"{path}: 'step' is a str")):
        load_local_checkpoint(target, path)


def test_save_pretrained_writes_nothing_when_it_fails(saved, tmp_path, monkeypatch):
    model, folder = saved
    tokenizer = model.data_preprocessor.tokenizer
    save = tokenizer.save_pretrained

    def save_and_more(directory, **kwargs):
        extra = os.path.join(directory, 'merges.txt')
        open(extra, 'w').close()
        return tuple(save(directory, **kwargs)) + (extra,)

    monkeypatch.setattr(tokenizer, 'save_pretrained', save_and_more)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with torch.no_grad():
        model.text_proj.weight.add_(1)
    for target in (tmp_path / 'new' / 'export', folder):
        with pytest.raises(RuntimeError, match=r"\['merges\.txt'\].*nothing was written to"):
            model.save_pretrained(target)
    assert not (tmp_path / 'new' / 'export').exists() and os.listdir(tmp_path / 'new') == []
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_converted_weights_are_recorded_in_the_config_and_the_card(saved, tmp_path):
    model, _ = saved
    folder = model.save_pretrained(tmp_path / 'converted', model_card=dict(converted_from='official.pth'))
    assert json.loads((folder / 'config.json').read_text())['converted_from'] == 'official.pth'
    card = (folder / 'README.md').read_text()
    assert yaml.safe_load(card.split('---\n')[1])['license'] == 'other'
    assert 'Weights converted from `official.pth`.' in card and 'License: not stated' in card
    R2D2Model.from_pretrained(folder)  # the record does not disturb loading
    assert 'converted_from' not in json.loads((tmp_path / 'export' / 'config.json').read_text())


def test_model_card_front_matter_and_metadata():
    config = dict(architecture='R2D2Model', r2d2lib_version='0.1.0',
                  model=dict(type='R2D2Model', image_encoder=dict(type='HFCLIPVisionEncoder', frozen=True),
                             text_encoder=dict(type='HFBertEncoder'),
                             text_image_encoder=dict(type='CrossEncoder'),
                             image_text_encoder=dict(type='CrossEncoder'), embed_dim=768),
                  preprocessing=dict(image_size=224, mean=[0.5] * 3, std=[0.25] * 3, max_length=64))
    card = render_model_card(config, dict(
        title='R2D2 ViT-B (23M)', paper=dict(title='CCMB and R2D2', url='https://arxiv.org/abs/2205.03860'),
        datasets=['Zero-Corpus 23M'], repo_id='org/r2d2-vitb-23m',
        results=[dict(dataset='Flickr30k-CN', metric='R@1 (i2t)', value=78.3),
                 dict(dataset='COCO-CN', metric='R@1 (i2t)', value=79.1)]))
    front = yaml.safe_load(card.split('---\n')[1])
    assert front == dict(license='apache-2.0', library_name='r2d2lib',
                         tags=['r2d2lib', 'vision-language', 'chinese', 'image-text-retrieval'])
    assert '# R2D2 ViT-B (23M)' in card and '[CCMB and R2D2](https://arxiv.org/abs/2205.03860)' in card
    assert '| dataset | metric | value |' in card and '| COCO-CN | R@1 (i2t) | 79.1 |' in card
    assert '`HFCLIPVisionEncoder` (frozen=True)' in card and '- Zero-Corpus 23M' in card
    assert "R2D2Model.from_pretrained('org/r2d2-vitb-23m')" in card and 'model.match(' in card
    assert render_model_card(config) == render_model_card(config, {})  # pure
    licensed = render_model_card(config, dict(converted_from='a.pth', license='mit'))
    assert yaml.safe_load(licensed.split('---\n')[1])['license'] == 'mit' and 'License: not' not in licensed


def test_from_pretrained_builds_the_tokenizer_now(saved):
    _, folder = saved
    for name in os.listdir(folder):
        if name.startswith('tokenizer'):
            os.remove(folder / name)
    with pytest.raises(OSError, match='loaded without a vocabulary'):
        R2D2Model.from_pretrained(folder)


def test_loading_does_not_depend_on_the_default_scope_another_runner_left(saved, batch):
    """A mmengine Runner built without ``default_scope`` sets the global scope to 'mmengine', where none of
    r2d2lib's parts are registered; from_pretrained builds in r2d2lib's scope whatever the caller's is (it
    failed with 'ImageTextDataPreprocessor is not in the mmengine::model registry')."""
    from mmengine.registry import DefaultScope
    model, folder = saved
    with DefaultScope.overwrite_default_scope('mmengine'):
        loaded = R2D2Model.from_pretrained(folder)
        assert DefaultScope.get_current_instance().scope_name == 'mmengine'  # the caller's, restored
    assert_same_outputs(model, loaded, batch)
