"""Preflight of tools/train.py and tools/test.py: is everything the config names there?

    python tools/preflight.py CONFIG [--stage train|test] [--cfg-options key=value ...]

Before anything is built (this module imports neither torch nor r2d2lib, so it answers in about a
second), it checks every data path, annotation file, image folder, shard, pretrained weight, tokenizer
and checkpoint that a config names: a local path must exist; a Hugging Face Hub id must be in the
Hub cache (``HF_HUB_CACHE``), or the Hub must answer within ``HUB_TIMEOUT`` seconds when
``HF_HUB_OFFLINE`` is not set. What is missing is printed as one short list, each entry with the doc
section that says how to get it, and the tools exit with code 2.

The stages check the loaders they run: ``train`` the training loader and, when the config validates,
the validation loader; ``test`` the test loader.
"""
import argparse
import os
import os.path as osp
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence

from mmengine.config import Config, DictAction

EXIT_MISSING = 2
HUB_TIMEOUT = 3.0  # seconds for the Hub to answer when HF_HUB_OFFLINE is not set

# Where each dataset type's data comes from (docs/datasets.md sections; anchors as GitHub makes them).
DATASET_DOCS = {key: f'docs/datasets.md#{anchor}' for key, anchor in {
    'ZeroCorpusDataset': 'zero-corpus-zerocorpusdataset',
    'ZeroCorpusShardDataset': 'zero-corpus-from-webdataset-shards-zerocorpussharddataset',
    'RetrievalDataset': 'icr-iqr-retrievaldataset-and-icm-iqm-matchingdataset',
    'MatchingDataset': 'icr-iqr-retrievaldataset-and-icm-iqm-matchingdataset',
    'Flickr30kCNDataset': 'flickr30k-cn-and-flickr30k-cna-flickr30kcndataset',
    'COCOCNDataset': 'coco-cn-cococndataset',
    'AICICCDataset': 'aic-icc-aiciccdataset',
    'MUGEDataset': 'muge-mugedataset',
    'ZeroShotClassificationDataset': 'zero-shot-classification-zeroshotclassificationdataset',
}.items()}
DATASET_DOC_DEFAULT = 'docs/datasets.md#the-record-contract'
TOY_DOC = 'docs/datasets.md#the-toy-shapes-corpus'  # data roots and vocabularies of the demo corpus
HUB_DOC = 'docs/hub.md#cache-and-offline-use'
CHECKPOINT_DOC = 'docs/finetune.md#the-pre-trained-weights-load_from'
# ImageTextDataPreprocessor's tokenizer when its config names none
DEFAULT_TOKENIZER = 'hfl/chinese-roberta-wwm-ext'
# Files of which one in the Hub cache makes a repo usable offline
HUB_WEIGHT_FILES = ('model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin',
                    'pytorch_model.bin.index.json')
HUB_TOKENIZER_FILES = ('vocab.txt', 'tokenizer.json')
# A config value with one of these endings is a local file, never a Hub id
LOCAL_SUFFIXES = ('.pth', '.pt', '.bin', '.ckpt', '.safetensors', '.txt', '.json', '.jsonl')
HUB_ID = re.compile(r'^[A-Za-z0-9][\w.-]*/[\w.-]+$')


@dataclass
class Missing:
    """One thing the config names that is not there."""

    what: str   # e.g. "annotation file data/zero_2.3m/train.parquet"
    key: str    # where the config names it, e.g. "train_dataloader.dataset.ann_file"
    doc: str    # the doc section that says how to get it
    hub: bool = False  # a Hub id that is neither cached nor downloadable now

    def __str__(self) -> str:
        return f'{self.what} ({self.key}{", not in the Hub cache" if self.hub else ""}) -> {self.doc}'


def _is_remote(path: str) -> bool:
    return '://' in path


def _join(root: Optional[str], path: str) -> str:
    return path if not root or osp.isabs(path) or _is_remote(path) else osp.join(root, path)


def expand_braces(pattern: str) -> List[str]:
    """The paths of a webdataset brace pattern: ``{000..009}`` (zero-padded) and ``{a,b}``."""
    match = re.search(r'\{([^{}]*)\}', pattern)
    if not match:
        return [pattern]
    head, tail, body = pattern[:match.start()], pattern[match.end():], match.group(1)
    numeric = re.fullmatch(r'(\d+)\.\.(\d+)', body)
    if numeric:
        first, last = numeric.groups()
        items = [str(i).zfill(len(first)) for i in range(int(first), int(last) + 1)]
    else:
        items = body.split(',')
    return [path for item in items for path in expand_braces(head + item + tail)]


def _dataset_paths(dataset: dict, key: str) -> Iterator[tuple]:
    """(description, path, config key) of every local path a dataset config names."""
    root = dataset.get('data_root') or ''
    named = False
    for name, value in dataset.items():
        if not isinstance(value, str) or not value:
            continue
        if name.endswith('_file') or name == 'image_list':
            named = True
            kind = 'annotation file' if name == 'ann_file' else name.replace('_', ' ')
            yield kind, _join(root, value), f'{key}.{name}'
    prefix = dataset.get('data_prefix')
    for name, value in (prefix.items() if isinstance(prefix, dict) else ()):
        if isinstance(value, str) and value:
            named = True
            yield 'image folder' if name == 'img_path' else f'{name} folder', _join(root, value), \
                f'{key}.data_prefix.{name}'
    shards = dataset.get('shards')
    if shards:
        named = True
        patterns = shards.split('::') if isinstance(shards, str) else list(shards)
        paths = [_join(root, p) for pattern in patterns for p in expand_braces(pattern)]
        yield 'shards', paths, f'{key}.shards'
    if root and not named:
        yield 'data root', root, f'{key}.data_root'


def check_dataset(dataset: dict, key: str) -> List[Missing]:
    """The missing paths of one dataset config (wrappers such as ConcatDataset are followed)."""
    missing = []
    for sub in ('dataset', 'datasets'):  # ConcatDataset, RepeatDataset, ClassBalancedDataset, ...
        inner = dataset.get(sub)
        for i, child in enumerate(inner if isinstance(inner, (list, tuple)) else [inner]):
            if isinstance(child, dict):
                missing += check_dataset(child, f'{key}.{sub}' + (f'[{i}]' if sub == 'datasets' else ''))
    doc = DATASET_DOCS.get(dataset.get('type'), DATASET_DOC_DEFAULT)
    if 'toy_shapes' in str(dataset.get('data_root', '')):
        doc = TOY_DOC
    for kind, path, where in _dataset_paths(dataset, key):
        if isinstance(path, list):  # shards: count what is missing, name the first
            absent = [p for p in path if not _is_remote(p) and not osp.exists(p)]
            if absent:
                missing.append(Missing(f'{len(absent)} of {len(path)} shards, first {absent[0]}', where, doc))
        elif not _is_remote(path) and not osp.exists(path):
            missing.append(Missing(f'{kind} {path}', where, doc))
    return missing


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids the network, read as huggingface_hub reads it."""
    return os.environ.get('HF_HUB_OFFLINE', '').strip().upper() in {'1', 'ON', 'YES', 'TRUE'}


def hub_cache() -> str:
    """The Hugging Face Hub cache that from_pretrained reads (``HF_HUB_CACHE``, ``HF_HOME``)."""
    from huggingface_hub import constants
    return constants.HF_HUB_CACHE


class HubCheck:
    """Is a Hub repo usable: one of its files in the cache, or (online) the Hub answers for it?

    After the Hub fails to answer once, it is not asked again: a machine without network costs one
    ``HUB_TIMEOUT`` at most.
    """

    def __init__(self, offline: Optional[bool] = None, timeout: float = HUB_TIMEOUT,
                 cache_dir: Optional[str] = None) -> None:
        self.offline = hub_offline() if offline is None else offline
        self.timeout = timeout
        self.cache_dir = cache_dir or hub_cache()
        self.unreachable = False

    def cached(self, repo_id: str, files: Sequence[str]) -> bool:
        from huggingface_hub import try_to_load_from_cache
        return any(isinstance(try_to_load_from_cache(repo_id, name, cache_dir=self.cache_dir), str)
                   for name in files)

    def online(self, repo_id: str) -> bool:
        if self.offline or self.unreachable:
            return False
        endpoint = os.environ.get('HF_ENDPOINT', 'https://huggingface.co').rstrip('/')
        try:
            with urllib.request.urlopen(f'{endpoint}/api/models/{repo_id}', timeout=self.timeout):
                return True
        except urllib.error.HTTPError:  # the Hub answered: no such repo, or gated
            return False
        except (OSError, ValueError):
            self.unreachable = True
            return False

    def why_not(self) -> str:
        """Why a repo that is not cached cannot be fetched now."""
        if self.offline:
            return 'HF_HUB_OFFLINE is set'
        if self.unreachable:
            return f'the Hub did not answer within {self.timeout:g} s'
        return 'the Hub has no such repo (or it is gated)'

    def __call__(self, repo_id: str, files: Sequence[str]) -> bool:
        """Whether the repo is usable: cached, or the Hub serves it."""
        return self.cached(repo_id, files) or self.online(repo_id)


def is_hub_id(value: str) -> bool:
    """A Hub id (``org/name``) rather than a local path: not there locally and shaped like one."""
    return (not osp.exists(value) and bool(HUB_ID.match(value))
            and not value.endswith(LOCAL_SUFFIXES) and not osp.isdir(value.split('/')[0]))


def _check_source(value: str, what: str, key: str, files: Sequence[str], hub: HubCheck,
                  local_doc: str) -> Optional[Missing]:
    """A local path or a Hub id (``files``: what makes its cached copy usable)."""
    if _is_remote(value) or osp.exists(value):
        return None
    if is_hub_id(value):
        return None if hub(value, files) else Missing(f'{what} {value}', key, HUB_DOC, hub=True)
    return Missing(f'{what} {value}', key, local_doc)


def check_model(model: dict, hub: HubCheck, key: str = 'model') -> List[Missing]:
    """Pretrained weights, tokenizers and init checkpoints named anywhere in the model config."""
    missing = []
    for name, value in model.items():
        where = f'{key}.{name}'
        if name == 'pretrained' and isinstance(value, str) and value:
            kind = key.split('.')[-1].replace('_', ' ') + ' weights'  # e.g. "image encoder weights"
            missing.append(_check_source(value, kind, where, HUB_WEIGHT_FILES, hub, CHECKPOINT_DOC))
        elif name == 'tokenizer' and isinstance(value, dict):
            if value.get('vocab_file'):
                path = str(value['vocab_file'])
                doc = TOY_DOC if 'toy_shapes' in path else HUB_DOC
                if not osp.exists(path):
                    missing.append(Missing(f'tokenizer vocabulary {path}', f'{where}.vocab_file', doc))
            elif value.get('name_or_path'):
                missing.append(_check_source(str(value['name_or_path']), 'tokenizer',
                                             f'{where}.name_or_path', HUB_TOKENIZER_FILES, hub, HUB_DOC))
        elif name == 'init_cfg' and isinstance(value, dict) and isinstance(value.get('checkpoint'), str):
            missing.append(_check_source(value['checkpoint'], 'init checkpoint', f'{where}.checkpoint',
                                         HUB_WEIGHT_FILES, hub, CHECKPOINT_DOC))
        elif isinstance(value, dict):
            missing += check_model(value, hub, where)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    missing += check_model(item, hub, f'{where}[{i}]')
    preprocessor = model.get('data_preprocessor')
    if (key == 'model' and isinstance(preprocessor, dict) and not preprocessor.get('tokenizer')
            and preprocessor.get('type') == 'ImageTextDataPreprocessor'):
        missing.append(_check_source(DEFAULT_TOKENIZER, 'tokenizer (the default)',
                                     f'{key}.data_preprocessor.tokenizer', HUB_TOKENIZER_FILES, hub, HUB_DOC))
    return [m for m in missing if m is not None]


def check_config(cfg: Config, stage: str = 'train', checkpoint: Optional[str] = None,
                 hub: Optional[HubCheck] = None) -> List[Missing]:
    """Everything ``cfg`` names for ``stage`` ('train' or 'test') that is missing.

    ``checkpoint`` is tools/test.py's checkpoint argument; training checks ``load_from`` unless it
    resumes from its own work dir (``resume=True`` without ``load_from``).
    """
    if stage not in ('train', 'test'):
        raise ValueError(f"stage must be 'train' or 'test', got {stage!r}")
    hub = hub or HubCheck()
    loaders = ['train_dataloader'] + (['val_dataloader'] if cfg.get('val_cfg') else [])
    missing = []
    for loader in (loaders if stage == 'train' else ['test_dataloader']):
        dataset = (cfg.get(loader) or {}).get('dataset')
        if isinstance(dataset, dict):
            missing += check_dataset(dataset, f'{loader}.dataset')
    missing += check_model(cfg.get('model') or {}, hub)
    weights = [('checkpoint', checkpoint, 'the checkpoint argument')] if checkpoint else []
    if stage == 'train' and cfg.get('load_from'):
        weights.append(('checkpoint to start from', cfg.load_from, 'load_from'))
    for what, path, key in weights:
        if not _is_remote(path) and not osp.exists(path):
            missing.append(Missing(f'{what} {path}', key, CHECKPOINT_DOC))
    merged = {}  # one entry per missing thing, naming every config key that names it
    for m in missing:
        if m.what in merged:
            merged[m.what].key += f', {m.key}'
        else:
            merged[m.what] = m
    return list(merged.values())


def format_missing(missing: Sequence[Missing], config: str, hub: Optional[HubCheck] = None) -> str:
    """The short list the tools print (and, if Hub repos are missing, one line on getting them)."""
    lines = [f'{config} names {len(missing)} thing(s) that are not here (nothing was built):']
    lines += [f'  - {m}' for m in missing]
    if any(m.hub for m in missing):
        why = f' ({hub.why_not()})' if hub else ''
        cache = hub.cache_dir if hub else hub_cache()
        lines.append(f'Hub cache: {cache}{why}; fill it on a machine with network: hf download ID')
    return '\n'.join(lines)


def check_or_exit(cfg: Config, config: str, stage: str = 'train', checkpoint: Optional[str] = None) -> None:
    """Print what is missing to stderr and exit with ``EXIT_MISSING``; return if nothing is."""
    hub = HubCheck()
    missing = check_config(cfg, stage, checkpoint, hub)
    if missing:
        print(format_missing(missing, config, hub), file=sys.stderr)
        sys.exit(EXIT_MISSING)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--stage', choices=['train', 'test'], default='train')
    parser.add_argument('--checkpoint', help="tools/test.py's checkpoint")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    args = parser.parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    check_or_exit(cfg, args.config, args.stage, args.checkpoint)
    print(f'{args.config}: everything it names for {args.stage} is here')


if __name__ == '__main__':
    main()
