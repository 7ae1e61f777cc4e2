"""The model zoo by name: list the models of the metafiles, read their entries, build or load them.

The facts are data: ``model_zoo/model-index.yml`` imports one OpenMMLab metafile per family
(``model_zoo/r2d2/metafile.yml``, ``model_zoo/prd2/metafile.yml``). Each model entry has
``Name``, ``In Collection``, ``Metadata`` (``Arch``: the converter arch of
:data:`~r2d2lib.converters.official_r2d2.ARCH_CONFIGS`, ``Training Data``, ...), ``Config``
(relative to the repository root), ``Results`` (the paper's numbers, or null), and for models
with an official checkpoint ``Weights`` (the Hub repo id) and ``Converted From``.

Hub ids: the metafiles store full ids, ``<HUB_ORG>/<Name>``, readable and copyable as they are;
the organisation is defined once, by :data:`HUB_ORG`, and the loader refuses a metafile whose
``Weights`` is anything else, so the two cannot drift apart.

Where the files are: ``model_zoo/`` and ``configs/`` sit at the repository root, beside the
package, like the configs the converters use (``REPO_ROOT``); they are found from a source
checkout and from an editable install (``pip install -e .``), which is how r2d2lib is
installed. A wheel would carry neither (see :func:`model_index_path`).
"""
from __future__ import annotations

import copy
import difflib
import fnmatch
import functools
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from r2d2lib.converters.official_r2d2 import ARCH_CONFIGS, REPO_ROOT, inference_model_config

PathLike = Union[str, os.PathLike]

#: The Hugging Face organisation that r2d2lib's converted checkpoints are published under.
HUB_ORG = 'r2d2lib'
#: Default ``model-index.yml``; the environment variable ``R2D2LIB_MODEL_INDEX`` overrides it.
MODEL_INDEX = REPO_ROOT / 'model_zoo' / 'model-index.yml'
#: Keys every model entry must have.
REQUIRED_KEYS = ('Name', 'In Collection', 'Metadata', 'Config', 'Results')


class ModelZooError(ValueError):
    """A metafile that does not follow the model-zoo format (the message names file and model)."""


def model_index_path() -> Path:
    """The ``model-index.yml`` in use: ``$R2D2LIB_MODEL_INDEX`` or ``<repo>/model_zoo/model-index.yml``."""
    path = Path(os.environ.get('R2D2LIB_MODEL_INDEX') or MODEL_INDEX)
    if not path.is_file():
        raise FileNotFoundError(
            f'the model zoo index {path} does not exist. model_zoo/ and configs/ live at the root of the '
            'r2d2lib repository: use a source checkout (pip install -e .), or point R2D2LIB_MODEL_INDEX at '
            'a model-index.yml')
    return path


def _read_yaml(path: Path) -> Any:
    import yaml
    try:
        return yaml.safe_load(path.read_text(encoding='utf-8'))
    except yaml.YAMLError as error:
        raise ModelZooError(f'{path} is not valid YAML: {error}') from error


def _check_model(model: Any, where: str, collections: Dict[str, dict]) -> None:
    if not isinstance(model, dict) or not isinstance(model.get('Name'), str):
        raise ModelZooError(f'{where}: every entry of Models needs a Name')
    where = f"{where}, model {model['Name']}"
    missing = [key for key in REQUIRED_KEYS if key not in model]
    if missing:
        raise ModelZooError(f'{where}: missing {missing}')
    if model['In Collection'] not in collections:
        raise ModelZooError(f"{where}: collection {model['In Collection']!r} is not defined "
                            f'(known: {sorted(collections)})')
    arch = (model['Metadata'] or {}).get('Arch')
    if arch not in ARCH_CONFIGS:
        raise ModelZooError(f'{where}: Metadata.Arch is {arch!r}, expected one of {sorted(ARCH_CONFIGS)}')
    weights = model.get('Weights')
    if weights is not None and weights != f"{HUB_ORG}/{model['Name']}":
        raise ModelZooError(f"{where}: Weights is {weights!r}; hub ids are HUB_ORG/Name, i.e. "
                            f"'{HUB_ORG}/{model['Name']}' (HUB_ORG in r2d2lib/apis/model_zoo.py)")


@functools.lru_cache(maxsize=4)
def _load_index(path: Path) -> Tuple[Dict[str, dict], Dict[str, dict]]:
    index = _read_yaml(path)
    imports = index.get('Import') if isinstance(index, dict) else None
    if not isinstance(imports, list):
        raise ModelZooError(f'{path}: expected an "Import" list of metafiles')
    collections: Dict[str, dict] = {}
    models: Dict[str, dict] = {}
    sources: Dict[str, str] = {}
    metafiles = []
    for rel in imports:
        metafile = path.parent / rel
        if not metafile.is_file():
            raise ModelZooError(f'{path} imports {rel}, which does not exist ({metafile})')
        data = _read_yaml(metafile) or {}
        metafiles.append((metafile, data))
        for collection in data.get('Collections') or []:
            if not isinstance(collection, dict) or not isinstance(collection.get('Name'), str):
                raise ModelZooError(f'{metafile}: every entry of Collections needs a Name')
            collections[collection['Name']] = collection
    for metafile, data in metafiles:
        for model in data.get('Models') or []:
            _check_model(model, str(metafile), collections)
            name = model['Name']
            if name in models:
                raise ModelZooError(f'model {name!r} is defined twice: in {sources[name]} and {metafile}')
            models[name] = model
            sources[name] = str(metafile)
    return collections, models


def load_model_index(path: Optional[PathLike] = None) -> Tuple[Dict[str, dict], Dict[str, dict]]:
    """``(collections, models)``: name -> entry, in metafile order (cached; do not modify)."""
    return _load_index(Path(path).resolve() if path is not None else model_index_path().resolve())


#: The architecture configs; a config's model name is its path below it, without ``.py``.
CONFIG_ROOT = REPO_ROOT / 'configs'


def config_models() -> Dict[str, Path]:
    """Name -> file of every architecture config under ``configs/`` (``_base_`` parts left out), e.g.
    ``'clip/clip_vitb_2.3m'``, ``'demo/r2d2_tiny_shapes'``, ``'r2d2/finetune/vitl_23m_icm'``."""
    return {path.relative_to(CONFIG_ROOT).with_suffix('').as_posix(): path
            for path in sorted(CONFIG_ROOT.rglob('*.py')) if '_base_' not in path.parts}


def list_models(pattern: Optional[str] = None) -> List[str]:
    """Sorted names of every model :func:`get_model` builds, those matching the fnmatch ``pattern`` if given.

    Two kinds: the model-zoo models of the metafiles (``r2d2_vitl_23m``: the paper's results, and released
    weights where :func:`list_pretrained` says so) and every architecture config by its path below
    ``configs/`` (``clip/clip_vitb_2.3m``, ``demo/r2d2_tiny_shapes``: a ``/`` in the name).
    Example: ``list_models('r2d2_vitb*')``, ``list_models('demo/*')``.
    """
    names = sorted(set(load_model_index()[1]) | set(config_models()))
    return names if pattern is None else fnmatch.filter(names, pattern)


def list_pretrained(pattern: Optional[str] = None) -> List[Tuple[str, str, str]]:
    """``(name, weights tag, source)`` of every model with released weights (as open_clip's
    ``list_pretrained``): the tag is ``'official'`` for converted official checkpoints, ``'r2d2lib'``
    otherwise; the source is the Hub repo id that ``get_model(name, pretrained=True)`` and
    :func:`~r2d2lib.apis.load_model` read."""
    rows = []
    for name, entry in load_model_index()[1].items():
        if entry.get('Weights') and (pattern is None or fnmatch.fnmatch(name, pattern)):
            rows.append((name, 'official' if entry.get('Converted From') else 'r2d2lib', entry['Weights']))
    return sorted(rows)


def _entry(name: str) -> dict:
    models = load_model_index()[1]
    if name not in models:
        names = list_models()
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f'; close names: {", ".join(close)}' if close else ''
        raise KeyError(f'{name!r} is not a model-zoo model{hint} (list_models() gives all {len(names)})')
    return models[name]


def get_model_info(name: str) -> Dict[str, Any]:
    """The metafile entry of model ``name`` (a copy), completed from its collection.

    ``Paper`` and ``Citation`` come from the collection; ``Metadata`` is the collection's
    updated with the model's (as OpenMMLab's model-index does). Raises ``KeyError`` with close
    names for an unknown ``name``.
    """
    info = copy.deepcopy(_entry(name))
    collection = load_model_index()[0][info['In Collection']]
    for key in ('Paper', 'Citation'):
        if key in collection and key not in info:
            info[key] = copy.deepcopy(collection[key])
    info['Metadata'] = {**copy.deepcopy(collection.get('Metadata') or {}), **(info.get('Metadata') or {})}
    return info


def get_model_config(name: str, **overrides) -> Dict[str, Any]:
    """The architecture config of ``name``: its Config's model without the objective and pretrained
    downloads (:func:`~r2d2lib.converters.official_r2d2.inference_model_config`),
    with ``overrides`` merged in recursively (mmengine's rules: a dict with ``_delete_=True``
    replaces instead of merging)."""
    configs = config_models()
    if name in configs and name not in load_model_index()[1]:
        from mmengine.config import Config

        from r2d2lib.io.pretrained import architecture_config
        cfg = architecture_config(Config.fromfile(str(configs[name])).model.to_dict())
    else:
        info = _entry(name)
        cfg = inference_model_config(info['Metadata']['Arch'], info['Config'])
    if overrides:
        from mmengine.config import Config
        merged = Config(dict(model=cfg))
        merged.merge_from_dict(dict(model=overrides))
        cfg = merged.to_dict()['model']
    return cfg


def _quiet_init_weights(model: nn.Module) -> None:
    """``model.init_weights()`` without mmengine's INFO line per parameter."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)


def released_weights(name: str) -> str:
    """The Hub repo id of model ``name``'s released weights; ``ValueError`` if it has none."""
    if name in config_models() and name not in load_model_index()[1]:
        raise ValueError(f'{name} is an architecture config: no released weights; train it with '
                         f'configs/{name}.py, or pass pretrained=<folder written by save_pretrained>')
    info = _entry(name)
    if not info.get('Weights'):
        raise ValueError(f'{name} has no released weights (the paper reports it, but no official '
                         f"checkpoint exists): train it with {info['Config']}, or pass "
                         'pretrained=<folder written by save_pretrained>')
    return info['Weights']


def get_model(name: str, pretrained: Union[bool, PathLike] = False, *,
              device: Optional[Union[str, torch.device]] = None,
              dtype: Optional[Union[str, torch.dtype]] = None, revision: Optional[str] = None,
              cache_dir: Optional[PathLike] = None, local_files_only: Optional[bool] = None,
              token: Optional[Union[str, bool]] = None, **overrides) -> nn.Module:
    """Model-zoo model ``name`` in eval mode, randomly initialised or with pretrained weights.

    Args:
        name: a name of :func:`list_models` (an unknown one raises ``KeyError`` with close names).
        pretrained: ``False``: build :func:`get_model_config` and initialise it as for training
            (``init_weights``; no pretrained towers). ``True``: the model's released weights
            (``Weights``), loaded by :func:`~r2d2lib.apis.load_model` (offline from the Hugging Face
            cache when ``HF_HUB_OFFLINE=1``); a model without released weights raises ``ValueError``.
            A path: load that folder (written by ``save_pretrained``), which must hold a model of the
            zoo model's class (its size is the folder's: config.json).
        device, dtype: where and in which floating dtype to put the model.
        revision, cache_dir, local_files_only, token: Hub options of ``load_model``.
        **overrides: merged into the model config (``pretrained=False`` only), e.g.
            ``embed_dim=256`` or ``text_encoder=dict(config=dict(num_hidden_layers=6))``.
    """
    from .loading import load_model
    model_cfg = get_model_config(name, **overrides)  # an unknown name: KeyError with close names
    if pretrained is False or pretrained is None:
        from r2d2lib.io.pretrained import build_architecture
        model = build_architecture(model_cfg, f'model-zoo model {name}')
        _quiet_init_weights(model)
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        if device is not None or dtype is not None:
            model.to(device=device, dtype=dtype)
        return model.eval()
    if overrides:
        raise TypeError(f'get_model({name!r}, pretrained=...) rebuilds the model from its config.json; '
                        f'config overrides ({sorted(overrides)}) apply to pretrained=False only')
    from r2d2lib.io import PretrainedConfigError
    from r2d2lib.io.pretrained import read_config, resolve_pretrained
    source = released_weights(name) if pretrained is True else os.fspath(pretrained)
    folder = resolve_pretrained(source, revision, cache_dir, local_files_only, token)
    architecture = read_config(folder)['architecture']  # checked before anything is built
    if architecture != model_cfg['type']:  # e.g. an R2D2Model folder for a dual-encoder name
        raise PretrainedConfigError(f"{folder} holds a {architecture}, but {name} is a {model_cfg['type']}")
    return load_model(folder, device=device, dtype=dtype)


def converted_model_card(src: Union[str, Path], zoo_name: Optional[str] = None,
                         default: Optional[dict] = None) -> Dict[str, Any]:
    """The model card metadata of a converted model: the model-zoo entry ``zoo_name`` (the converter
    tools' ``--model``) if given, else ``default``; with ``converted_from`` (the source file's name),
    which ``save_pretrained`` records in config.json and ``tools/publish_to_hub.py`` reads back.

    Raises ``KeyError`` (with close names) for a name that is not a model-zoo model.
    """
    card = model_card_metadata(zoo_name, official=True) if zoo_name is not None else dict(default or {})
    return {**card, 'converted_from': Path(src).name}


def _result_rows(results: Optional[List[dict]]) -> List[Dict[str, Any]]:
    return [{'Task': r['Task'], 'Dataset': r['Dataset'], **r['Metrics']} for r in results or []]


def model_card_metadata(name: str, repo_id: Optional[str] = None, official: bool = True) -> Dict[str, Any]:
    """Metadata of :func:`~r2d2lib.apis.model_card.render_model_card` for model ``name``.

    ``repo_id`` defaults to the model's ``Weights``. ``official=False``: the weights are not the
    official ones (e.g. a checkpoint trained with r2d2lib from the model's config); the card
    then says that the paper's results are for reference, not measured on them.

    ``license``: ``other`` for the official weights (the official release states none, nor do the
    metafiles); ``apache-2.0`` (r2d2lib's) for weights trained with r2d2lib.
    """
    info = get_model_info(name)
    meta = info['Metadata']
    results = info.get('Results') or []
    description = [f"`{name}` of the r2d2lib model zoo: {info['In Collection']} with a "
                   f"{meta.get('Image Encoder', 'ViT')} image encoder, trained on "
                   f"{', '.join(meta.get('Training Data', []))}."]
    if meta.get('Fine-tuned From'):
        description.append(f"Fine-tuned from `{meta['Fine-tuned From']}`.")
    if not official:
        description.append(f"These weights were trained with r2d2lib from the config of `{name}`; they are "
                           'not the official checkpoint.')
    elif info.get('Converted From'):
        description.append(f"Converted from the official checkpoint ({info['Converted From']['Weights']}) "
                           f"of {info['Converted From']['Code']}.")
    if results:
        description.append('Results: the numbers the paper reports, in %'
                           + (' (for reference: not measured on these weights).' if not official else '.'))
    if any('after fine-tuning' in r['Task'] for r in results):
        description.append('Rows "after fine-tuning" are those of the pre-trained model fine-tuned on the '
                           'dataset.')
    card = dict(title=f"{info['In Collection']} {meta.get('Image Encoder', '')} ({name})".replace('  ', ' '),
                description=' '.join(description),
                paper=dict(title=info['Paper']['Title'], url=info['Paper']['URL']),
                datasets=list(meta.get('Training Data', [])),
                results=_result_rows(results))
    card['license'] = 'other' if official else 'apache-2.0'
    if info.get('Citation'):
        card['citation'] = info['Citation']
    if repo_id or info.get('Weights'):
        card['repo_id'] = repo_id or info['Weights']
    return card
