"""tools/preflight.py: before anything is built, list what a config names but is missing (exit code 2).

The module is loaded by path, as tools/train.py loads it; it needs neither torch nor r2d2lib.
"""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config

ROOT = Path(__file__).parents[2]
spec = importlib.util.spec_from_file_location('preflight', ROOT / 'tools' / 'preflight.py')
preflight = importlib.util.module_from_spec(spec)
spec.loader.exec_module(preflight)

CLIP = 'openai/clip-vit-base-patch16'
TOKENIZER = 'hfl/chinese-roberta-wwm-ext'


def hub_repo(cache: Path, repo_id: str, files) -> None:
    """A Hub repo in the cache layout huggingface_hub reads: refs/main -> snapshots/<commit>/<files>."""
    repo = cache / f'models--{repo_id.replace("/", "--")}'
    commit = 'a' * 40
    (repo / 'refs').mkdir(parents=True)
    (repo / 'refs' / 'main').write_text(commit)
    for name in files:
        path = repo / 'snapshots' / commit / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{}')


def pretraining_config(root: Path, pretrained=CLIP, tokenizer=None) -> Config:
    """The shape of configs/r2d2/vitb_2.3m.py: a Zero corpus table, JSON-lines validation, Hub ids."""
    preprocessor = dict(type='ImageTextDataPreprocessor')
    if tokenizer:
        preprocessor['tokenizer'] = tokenizer
    data_root = str(root / 'zero')
    return Config(dict(
        model=dict(type='R2D2Model', data_preprocessor=preprocessor,
                   image_encoder=dict(type='HFCLIPVisionEncoder', pretrained=pretrained)),
        train_dataloader=dict(dataset=dict(type='ZeroCorpusDataset', data_root=data_root,
                                           ann_file='train.parquet', data_prefix=dict(img_path='images'))),
        val_dataloader=dict(dataset=dict(type='RetrievalDataset', data_root=data_root, ann_file='val.jsonl')),
        val_cfg=dict(type='RetrievalValLoop'),
        test_dataloader=dict(dataset=dict(type='RetrievalDataset', data_root=data_root,
                                          ann_file='test.jsonl'))))


def whats(missing):
    return [m.what for m in missing]


def test_nothing_is_missing_when_the_data_and_the_cached_hub_repos_are_there(tmp_path):
    (tmp_path / 'zero' / 'images').mkdir(parents=True)
    for name in ('train.parquet', 'val.jsonl', 'test.jsonl'):
        (tmp_path / 'zero' / name).write_text('')
    cache = tmp_path / 'hub'
    hub_repo(cache, CLIP, ['config.json', 'model.safetensors'])
    hub_repo(cache, TOKENIZER, ['vocab.txt'])
    hub = preflight.HubCheck(offline=True, cache_dir=str(cache))
    cfg = pretraining_config(tmp_path)
    assert preflight.check_config(cfg, 'train', hub=hub) == []
    assert preflight.check_config(cfg, 'test', hub=hub) == []
    # a cached config.json without weights is not enough for the encoder
    cfg.model.image_encoder.pretrained = 'openai/clip-vit-large-patch14'
    hub_repo(cache, 'openai/clip-vit-large-patch14', ['config.json'])
    assert whats(preflight.check_config(cfg, 'train', hub=hub)) == [
        'image encoder weights openai/clip-vit-large-patch14']


def test_lists_every_missing_path_with_its_config_key_and_doc(tmp_path):
    hub = preflight.HubCheck(offline=True, cache_dir=str(tmp_path / 'empty_cache'))
    missing = preflight.check_config(pretraining_config(tmp_path), 'train', hub=hub)
    zero = tmp_path / 'zero'
    assert whats(missing) == [f'annotation file {zero}/train.parquet', f'image folder {zero}/images',
                              f'annotation file {zero}/val.jsonl', f'image encoder weights {CLIP}',
                              f'tokenizer (the default) {TOKENIZER}']
    assert [m.key for m in missing] == [
        'train_dataloader.dataset.ann_file', 'train_dataloader.dataset.data_prefix.img_path',
        'val_dataloader.dataset.ann_file', 'model.image_encoder.pretrained',
        'model.data_preprocessor.tokenizer']
    assert [m.doc for m in missing] == [
        'docs/datasets.md#zero-corpus-zerocorpusdataset'] * 2 + [
        'docs/datasets.md#icr-iqr-retrievaldataset-and-icm-iqm-matchingdataset'] + [
        'docs/hub.md#cache-and-offline-use'] * 2
    assert [m.hub for m in missing] == [False, False, False, True, True]
    # the test stage checks the test loader instead, and tools/test.py's checkpoint
    missing = preflight.check_config(pretraining_config(tmp_path), 'test', checkpoint='no/such.pth', hub=hub)
    assert whats(missing)[0] == f'annotation file {zero}/test.jsonl' and len(missing) == 4
    assert (missing[-1].what, missing[-1].key) == ('checkpoint no/such.pth', 'the checkpoint argument')


def test_local_weights_tokenizer_files_load_from_and_shards(tmp_path):
    (tmp_path / 'shards').mkdir()
    (tmp_path / 'shards' / 'part-001.tar').write_text('')
    cfg = Config(dict(
        model=dict(type='R2D2Model',
                   data_preprocessor=dict(type='ImageTextDataPreprocessor',
                                          tokenizer=dict(vocab_file=str(tmp_path / 'vocab.txt'))),
                   image_encoder=dict(type='TimmViTEncoder', pretrained=str(tmp_path / 'vit.pth')),
                   text_encoder=dict(type='HFBertEncoder', pretrained=True)),  # not a path: not checked
        train_dataloader=dict(dataset=dict(
            type='ConcatDataset', datasets=[dict(type='ZeroCorpusShardDataset', data_root=str(tmp_path),
                                                 shards='shards/part-{000..003}.tar')])),
        load_from=str(tmp_path / 'r2d2.pth')))
    missing = preflight.check_config(cfg, 'train', hub=preflight.HubCheck(offline=True))
    assert whats(missing) == [f'3 of 4 shards, first {tmp_path}/shards/part-000.tar',
                              f'tokenizer vocabulary {tmp_path}/vocab.txt',
                              f'image encoder weights {tmp_path}/vit.pth',
                              f'checkpoint to start from {tmp_path}/r2d2.pth']
    assert missing[0].key == 'train_dataloader.dataset.datasets[0].shards'
    assert missing[2].doc == 'docs/finetune.md#the-pre-trained-weights-load_from'


def test_a_path_named_by_two_loaders_is_listed_once(tmp_path):
    dataset = dict(type='Flickr30kCNDataset', data_root=str(tmp_path), ann_file='a.txt',
                   data_prefix=dict(img_path='images'))
    cfg = Config(dict(train_dataloader=dict(dataset=dataset), val_dataloader=dict(dataset=dataset),
                      val_cfg=dict()))
    missing = preflight.check_config(cfg, 'train', hub=preflight.HubCheck(offline=True))
    assert len(missing) == 2  # val_cfg=dict() is falsy: validation is off, val data not checked
    cfg.val_cfg = dict(type='RetrievalValLoop')
    missing = preflight.check_config(cfg, 'train', hub=preflight.HubCheck(offline=True))
    assert [m.key for m in missing] == [
        'train_dataloader.dataset.ann_file, val_dataloader.dataset.ann_file',
        'train_dataloader.dataset.data_prefix.img_path, val_dataloader.dataset.data_prefix.img_path']


def test_online_a_hub_that_does_not_answer_is_asked_once(tmp_path, monkeypatch):
    monkeypatch.setenv('HF_ENDPOINT', 'http://127.0.0.1:9')  # the discard port: connection refused
    hub = preflight.HubCheck(offline=False, timeout=1, cache_dir=str(tmp_path))
    calls = []
    real = preflight.urllib.request.urlopen
    monkeypatch.setattr(preflight.urllib.request, 'urlopen', lambda *a, **k: calls.append(a) or real(*a, **k))
    assert not hub(CLIP, ['model.safetensors']) and not hub(TOKENIZER, ['vocab.txt'])
    assert len(calls) == 1 and hub.unreachable
    assert hub.why_not() == 'the Hub did not answer within 1 s'


def test_expand_braces_as_webdataset_does():
    assert preflight.expand_braces('a-{08..10}.tar') == ['a-08.tar', 'a-09.tar', 'a-10.tar']
    assert preflight.expand_braces('{x,y}/{0..1}') == ['x/0', 'x/1', 'y/0', 'y/1']


def test_hub_ids_and_local_paths_are_told_apart(tmp_path):
    assert preflight.is_hub_id(CLIP)
    assert not preflight.is_hub_id('checkpoints/r2d2_vitb_23m.pth')
    (tmp_path / 'org').mkdir()
    assert not preflight.is_hub_id(str(tmp_path / 'org' / 'model'))


def github_anchor(heading: str) -> str:
    text = re.sub(r'[^\w\- ]', '', heading.strip().lower())
    return text.replace(' ', '-')


@pytest.mark.parametrize('doc', sorted({*preflight.DATASET_DOCS.values(), preflight.DATASET_DOC_DEFAULT,
                                        preflight.TOY_DOC, preflight.HUB_DOC, preflight.CHECKPOINT_DOC}))
def test_every_doc_section_exists(doc):
    path, anchor = doc.split('#')
    headings = [line.lstrip('#') for line in (ROOT / path).read_text().splitlines() if line.startswith('#')]
    assert anchor in {github_anchor(h) for h in headings}


def test_the_default_tokenizer_is_the_preprocessors():
    source = (ROOT / 'r2d2lib' / 'models' / 'data_preprocessors' / 'image_text.py').read_text()
    assert f"dict(name_or_path='{preflight.DEFAULT_TOKENIZER}')" in source


@pytest.mark.parametrize('config', sorted(str(p.relative_to(ROOT)) for p in (ROOT / 'configs').rglob('*.py')
                                          if '_base_' not in p.parts))
def test_every_config_can_be_checked(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data here: every relative path is missing
    cfg = Config.fromfile(ROOT / config)
    for stage in ('train', 'test'):
        for m in preflight.check_config(cfg, stage, hub=preflight.HubCheck(offline=True)):
            assert m.doc.split('#')[0] in ('docs/datasets.md', 'docs/hub.md', 'docs/finetune.md')


def test_train_py_without_data_exits_2_before_importing_torch(tmp_path):
    """The issue's case: configs/r2d2/vitb_2.3m.py on a machine with no data and an empty Hub cache."""
    code = ('import runpy, sys\n'
            f'sys.argv = ["tools/train.py", {str(ROOT / "configs/r2d2/vitb_2.3m.py")!r}]\n'
            'try:\n'
            f'    runpy.run_path({str(ROOT / "tools/train.py")!r}, run_name="__main__")\n'
            'except SystemExit as exit:\n'
            '    print("exit", exit.code, "torch" in sys.modules, "r2d2lib" in sys.modules)\n')
    result = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, env={'HF_HUB_OFFLINE': '1', 'HF_HUB_CACHE': str(tmp_path / 'hub'),
                                              'PATH': '/usr/bin:/bin'})
    assert result.stdout.strip() == 'exit 2 False False', result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].endswith('names 5 thing(s) that are not here (nothing was built):')
    for needle in ('data/zero_2.3m/train.parquet', 'data/zero_2.3m/images', 'data/zero_2.3m/val.jsonl', CLIP,
                   TOKENIZER):
        assert sum(needle in line for line in lines[1:6]) == 1, needle
    assert lines[6] == (f'Hub cache: {tmp_path / "hub"} (HF_HUB_OFFLINE is set); fill it on a machine with '
                        'network: hf download ID')
