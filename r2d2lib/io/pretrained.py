"""Save and load architectures in the Hugging Face Hub layout: config.json + model.safetensors.

A saved folder (or Hub repo) holds

- ``config.json``: ``architecture`` (the registered model class), ``r2d2lib_version``, ``model`` (the
  architecture's constructor arguments as plain JSON: towers, cross encoders, heads, temperature,
  preprocessor; never a training objective) and ``preprocessing`` (image size, mean, std, text
  length: what a user of the embeddings needs to know). Its schema is closed and checked before
  anything is built (:mod:`r2d2lib.io.config_schema`);
- ``model.safetensors``: the weights of the model without its objective (``objective.*``);
- the tokenizer files (``tokenizer.json``, ``tokenizer_config.json``; ``vocab.txt`` and
  ``special_tokens_map.json`` with transformers 4), referred to as ``tokenizer=dict(name_or_path='.')``;
- ``README.md``: the model card (:func:`~r2d2lib.io.model_card.render_model_card`).

Export is "the model without ``objective``": the objective is one constructor argument and one
state-dict prefix, so nothing is rewritten. Init-time settings (an encoder's ``pretrained`` weights,
any ``init_cfg``) become null, since the weights are in the safetensors file.

Loading checks config.json against the schema, builds the architecture through r2d2lib's registries
and copies the weights strictly: a missing, unexpected or wrong-shaped key raises
:class:`~r2d2lib.io.checkpoint.PretrainedLoadError` naming it. Nothing is unpickled.

This module reads the registries, never ``r2d2lib.models`` itself: the models' ``from_pretrained`` and
``save_pretrained`` call it (layers: registry <- io <- models).
"""
from __future__ import annotations

import copy
import inspect
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
from torch import Tensor, nn

from r2d2lib.version import __version__

from .checkpoint import OBJECTIVE_PREFIX, check_state_dict_keys, load_state_dict_strict, read_safetensors
from .config_schema import TOKENIZER_IN_FOLDER, PretrainedConfigError, check_pretrained_config, plain_data
from .model_card import render_model_card

PathLike = Union[str, os.PathLike]

CONFIG_NAME = 'config.json'
WEIGHTS_NAME = 'model.safetensors'
CARD_NAME = 'README.md'
# What tokenizer.save_pretrained writes (transformers 5: the first two; 4.x: all four).
TOKENIZER_FILES = ('tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.txt',
                   'added_tokens.json')
# The files from_pretrained fetches from a Hub repo (snapshot_download's allow_patterns).
HUB_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME) + TOKENIZER_FILES
#: Config keys that only initialisation reads (pretrained weights); a loaded model has its weights.
INIT_ONLY_KEYS = ('pretrained', 'init_cfg')


# ----------------------------------------------------------------------------------- architecture
def clear_init_only(cfg: Any) -> Any:
    """Set ``pretrained`` and ``init_cfg`` to None at every level (in place; returned), except inside
    an encoder's transformers ``config`` dict, so that building the model downloads nothing."""
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            if key in INIT_ONLY_KEYS:
                cfg[key] = None
            elif key != 'config':
                clear_init_only(value)
    elif isinstance(cfg, list):
        for value in cfg:
            clear_init_only(value)
    return cfg


def architecture_config(model_cfg: Mapping) -> Dict[str, Any]:
    """A copy of a model config as an architecture: plain data (:func:`plain_data`), no ``objective``, no
    init-only keys."""
    cfg = plain_data(model_cfg)
    cfg.pop('objective', None)
    return clear_init_only(cfg)


def build_architecture(model_cfg: Dict[str, Any], source: str) -> nn.Module:
    """Build a model config that :func:`~r2d2lib.io.config_schema.check_model_config` accepts.

    The class is looked up in ``MODELS``' own table by its exact name (never imported by name); its
    parts are built by the model through r2d2lib's registries, whose entries the schema checked, in
    r2d2lib's scope whatever the caller's default scope is (a mmengine ``Runner`` built without
    ``default_scope`` leaves 'mmengine', where none of r2d2lib's parts are registered).
    """
    from mmengine.registry import DefaultScope

    from .config_schema import architecture_registries, check_model_config
    check_model_config(model_cfg, source)
    cfg = dict(model_cfg)
    cls = architecture_registries()['model'].module_dict[cfg.pop('type')]
    try:
        with DefaultScope.overwrite_default_scope('r2d2lib'):
            return cls(**cfg)
    except (TypeError, KeyError, ValueError, AttributeError) as error:
        raise PretrainedConfigError(f'{source}: "model" does not build a {cls.__name__}: {error}') from error


# ----------------------------------------------------------------------------------- export
def _json_value(value: Any, where: str) -> Any:
    """``value`` as plain JSON data (dicts, lists, str, numbers, bool, None); errors name the key."""
    if isinstance(value, dict):
        return {str(k): _json_value(v, f'{where}.{k}') for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v, f'{where}[{i}]') for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, type) and where.endswith('.type'):
        return value.__name__  # type=SomeClass: registered under its class name
    raise TypeError(f'{where} is a {type(value).__name__}, which config.json cannot hold; build the '
                    'model from a config of plain values or pass save_pretrained(model_config=...)')


def export_config(model: nn.Module, model_config: Optional[dict] = None) -> Dict[str, Any]:
    """The content of config.json for ``model`` (built from ``model_config`` or its own record)."""
    cfg = _json_value(model.model_config if model_config is None else model_config, 'model')
    cfg.setdefault('type', type(model).__name__)
    if cfg['type'] != type(model).__name__:
        raise ValueError(f"model_config describes {cfg['type']} but the model is a {type(model).__name__}")
    cfg = architecture_config(cfg)
    preprocessor = model.data_preprocessor
    dp_cfg = cfg.get('data_preprocessor') or dict(type=type(preprocessor).__name__)
    dp_cfg['tokenizer'] = dict(name_or_path=TOKENIZER_IN_FOLDER)
    cfg['data_preprocessor'] = dp_cfg
    defaults = inspect.signature(type(preprocessor).__init__).parameters
    preprocessing = dict(image_size=preprocessor.image_size,
                         mean=list(dp_cfg.get('mean', defaults['mean'].default)),
                         std=list(dp_cfg.get('std', defaults['std'].default)),
                         max_length=preprocessor.max_length)
    return dict(architecture=type(model).__name__, r2d2lib_version=__version__, model=cfg,
                preprocessing=preprocessing)


def export_state_dict(model: nn.Module) -> Dict[str, Tensor]:
    """The architecture's weights (no ``objective.*``): CPU, contiguous, no shared storage."""
    state: Dict[str, Tensor] = {}
    storages = set()
    for key, tensor in model.state_dict().items():
        if key.startswith(OBJECTIVE_PREFIX):
            continue
        tensor = tensor.detach().cpu().contiguous()
        storage = tensor.untyped_storage()
        # safetensors refuses tensors that share memory (tied weights, views): give each its own
        if storage.data_ptr() in storages or storage.nbytes() != tensor.numel() * tensor.element_size():
            tensor = tensor.clone()
        storages.add(tensor.untyped_storage().data_ptr())
        state[key] = tensor
    return state


def _check_export(config: dict, state: Dict[str, Tensor], folder: Path) -> None:
    """The exported config must pass the schema and rebuild (on the meta device) the exported keys."""
    source = f'the export to {folder} (config.json)'
    check_pretrained_config(config, source)
    with torch.device('meta'):
        reference = build_architecture(config['model'], source).state_dict()
    mismatched = [(k, v.shape, reference[k].shape) for k, v in state.items()
                  if k in reference and v.shape != reference[k].shape]
    check_state_dict_keys(reference.keys() - state.keys(), state.keys() - reference.keys(),
                          f'the export to {folder} (config.json vs weights)', mismatched=mismatched)


def save_pretrained(model: nn.Module, save_directory: PathLike, model_config: Optional[dict] = None,
                    model_card: Optional[dict] = None) -> Path:
    """Write ``model``'s architecture and weights to ``save_directory`` (see the module doc).

    Args:
        model: a :class:`~r2d2lib.models.DualEncoderModel` or subclass, unwrapped (not DDP).
        save_directory: created if needed; files of the same names are replaced.
        model_config: the MODELS config of ``model``; defaults to the arguments it was
            built with (``model.model_config``).
        model_card: metadata for :func:`render_model_card` (title, paper, datasets, results, ...);
            its ``converted_from`` (the file converted weights come from) is also written to
            config.json.

    The files are written to a temporary folder beside ``save_directory`` and moved into it only
    when all of them are written: an error leaves ``save_directory`` as it was.
    """
    folder = Path(save_directory)
    config = export_config(model, model_config)
    if (model_card or {}).get('converted_from'):
        config['converted_from'] = str(model_card['converted_from'])
    state = export_state_dict(model)
    _check_export(config, state, folder)
    tokenizer = model.data_preprocessor.tokenizer  # built (and any error raised) before writing
    num_parameters = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(OBJECTIVE_PREFIX))
    card = render_model_card(config, {'num_parameters': num_parameters, **(model_card or {})})
    from safetensors.torch import save_file
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f'.{folder.name}.partial-') as tmp:
        staging = Path(tmp)
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2, ensure_ascii=False) + '\n',
                                           encoding='utf-8')
        save_file(state, str(staging / WEIGHTS_NAME), metadata={'format': 'pt'})
        written = [Path(p).name for p in tokenizer.save_pretrained(str(staging))]
        unknown = sorted(set(written) - set(TOKENIZER_FILES))
        if unknown:
            raise RuntimeError(f'the tokenizer wrote {unknown}, which from_pretrained does not download; add '
                               'them to r2d2lib.io.pretrained.TOKENIZER_FILES '
                               f'(nothing was written to {folder})')
        (staging / CARD_NAME).write_text(card, encoding='utf-8')
        folder.mkdir(exist_ok=True)
        for path in staging.iterdir():
            os.replace(path, folder / path.name)
    return folder


# ----------------------------------------------------------------------------------- load
def resolve_pretrained(name_or_path: PathLike, revision: Optional[str] = None,
                       cache_dir: Optional[PathLike] = None, local_files_only: Optional[bool] = None,
                       token: Optional[Union[str, bool]] = None) -> Path:
    """A local folder as is; otherwise the Hub repo's snapshot folder in the cache (downloaded if allowed).

    ``local_files_only=None`` follows ``HF_HUB_OFFLINE``; ``revision`` (branch, tag or
    commit) and ``token`` apply to Hub repos only. Only :data:`HUB_FILES` are fetched.
    """
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
    from huggingface_hub.utils import validate_repo_id

    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f'{path} is a file; pass a folder written by save_pretrained, a Hub repo id, or a '
                         'config file with its checkpoint (load_model(config, checkpoint))')
    repo_id = os.fspath(name_or_path)
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise FileNotFoundError(f'{repo_id!r} is neither an existing folder nor a Hub repo id '
                                '("org/name")') from None
    if local_files_only is None:
        local_files_only = constants.HF_HUB_OFFLINE
    try:
        folder = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, token=token,
                                   local_files_only=local_files_only, allow_patterns=list(HUB_FILES),
                                   library_name='r2d2lib', library_version=__version__)
    except LocalEntryNotFoundError as error:
        raise FileNotFoundError(
            f'{repo_id!r} (revision {revision or "main"}) is not a local folder and not in the Hugging Face '
            f'cache {cache_dir or constants.HF_HUB_CACHE}, and it could not be downloaded '
            f'(HF_HUB_OFFLINE={int(bool(constants.HF_HUB_OFFLINE))}, local_files_only={local_files_only}): '
            f'{error}') from error
    return Path(folder)


def read_config(folder: Path) -> Dict[str, Any]:
    """config.json of ``folder``, parsed and checked against the closed schema."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f'{folder} has no {CONFIG_NAME}: not a folder written by save_pretrained')
    try:
        config = json.loads(path.read_text(encoding='utf-8'))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PretrainedConfigError(f'{path} is not valid JSON: {error}') from error
    return check_pretrained_config(config, str(path))


def load_pretrained(name_or_path: PathLike, model_class: type, revision: Optional[str] = None,
                    cache_dir: Optional[PathLike] = None, local_files_only: Optional[bool] = None,
                    token: Optional[Union[str, bool]] = None,
                    device: Optional[Union[str, torch.device]] = None,
                    dtype: Optional[Union[str, torch.dtype]] = None) -> nn.Module:
    """Rebuild a saved architecture from a local folder or a Hub repo and load its weights strictly.

    Args:
        name_or_path: a folder written by :func:`save_pretrained`, or a Hub repo id.
        model_class: the class config.json must describe, or a base of it.
        revision, cache_dir, local_files_only, token: Hub options (see :func:`resolve_pretrained`).
        device: where to put the model (default: CPU).
        dtype: floating dtype of parameters and buffers (``torch.bfloat16`` or ``'bfloat16'``).

    Returns:
        The model (of the class config.json names) in eval mode, without an objective, tokenizer built.

    Raises:
        PretrainedConfigError: config.json breaks the schema (names the key path) or describes
            another class than ``model_class``; nothing was imported or built.
        PretrainedLoadError: missing / unexpected / wrong-shaped keys, or an unreadable
            weights file; the message names them and the file.
    """
    folder = resolve_pretrained(name_or_path, revision, cache_dir, local_files_only, token)
    config = read_config(folder)
    path = folder / CONFIG_NAME
    from .config_schema import architecture_registries
    cls = architecture_registries()['model'].module_dict[config['architecture']]
    if not issubclass(cls, model_class):
        raise PretrainedConfigError(f'{path} describes {cls.__name__}, not {model_class.__name__}')
    model_cfg = copy.deepcopy(config['model'])
    if model_cfg.get('data_preprocessor', {}).get('tokenizer') is not None:
        model_cfg['data_preprocessor']['tokenizer'] = dict(name_or_path=str(folder))
    model = build_architecture(model_cfg, str(path))
    weights = folder / WEIGHTS_NAME
    load_state_dict_strict(model, read_safetensors(weights), str(weights))
    model.data_preprocessor.tokenizer  # noqa: B018 (built now: missing tokenizer files fail here)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model.eval()


# ----------------------------------------------------------------------------------- publish
def push_to_hub(model: nn.Module, repo_id: str, commit_message: str = 'Upload r2d2lib model',
                private: Optional[bool] = None, token: Optional[Union[str, bool]] = None,
                revision: Optional[str] = None, create_pr: bool = False,
                model_config: Optional[dict] = None, model_card: Optional[dict] = None):
    """:func:`save_pretrained` to a temporary folder, create the repo if needed and upload the folder.

    ``revision``: the branch to commit to (created from the default branch if missing,
    unless ``create_pr``). The model card's usage snippet names ``repo_id``. Returns the
    ``CommitInfo`` of ``HfApi.upload_folder``.
    """
    from huggingface_hub import HfApi
    api = HfApi(token=token, library_name='r2d2lib', library_version=__version__)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, token=token).repo_id
    if revision is not None and not create_pr:
        api.create_branch(repo_id, branch=revision, exist_ok=True, token=token)
    with tempfile.TemporaryDirectory() as tmp:
        card = {'repo_id': repo_id, **(model_card or {})}
        save_pretrained(model, tmp, model_config=model_config, model_card=card)
        return api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message,
                                 token=token, revision=revision, create_pr=create_pr)
