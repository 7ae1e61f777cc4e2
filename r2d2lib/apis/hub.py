"""Save, load and publish models in the Hugging Face Hub layout: config.json + model.safetensors.

A saved folder (or Hub repo) holds

- ``config.json``: ``architecture`` (the registered class), ``r2d2lib_version``, ``model``
  (the MODELS config that rebuilds the architecture, as plain JSON) and ``preprocessing``
  (image size, mean, std, text length: what a user of the embeddings needs to know);
- ``model.safetensors``: the weights of the inference model;
- the tokenizer files (``tokenizer.json``, ``tokenizer_config.json``; ``vocab.txt`` and
  ``special_tokens_map.json`` with transformers 4), referred to by ``model`` as
  ``tokenizer=dict(name_or_path='.')``, i.e. relative to the folder;
- ``README.md``: the model card (:func:`~r2d2lib.apis.model_card.render_model_card`).

Exports are for inference. Training-only state is left out: the momentum teacher
(``teacher.*``), the feature queues (``queue.*``) and the FgD centres
(``image_centre.*``, ``text_centre.*``), and the config says ``teacher=None,
queue=None, fgd_loss=None, loss_weights=None``. A contrastive loss that needs a queue
cannot be built without one, so it becomes :class:`GCPRLoss` with the temperature it
has reached (``TargetDistillLoss``: same learnable flag and range; ``MoCoLoss``:
``learnable=False``). Init-time settings (an encoder's ``pretrained`` weights, any
``init_cfg``) become None since the weights are in the safetensors file.

Weights converted from another release (``tools/convert/*.py``) are recorded as such:
``model_card=dict(converted_from=<source file name>)`` adds ``converted_from`` to config.json,
which ``tools/publish_to_hub.py`` reads back.

Loading rebuilds the model through the registry and copies the weights strictly: a
missing, unexpected or wrong-shaped key raises :class:`PretrainedLoadError` naming it.
Nothing from the Hub is unpickled; a local ``.pth`` is read weights-only, and one that needs a
full unpickle needs ``allow_pickle=True``.
"""
from __future__ import annotations

import inspect
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from r2d2lib.converters.building import config_temperature, inference_config
from r2d2lib.converters.checkpoint_files import load_checkpoint_file, read_safetensors, unwrap_state_dict
from r2d2lib.models.encoders.base import check_state_dict_keys, load_state_dict_strict
from r2d2lib.models.losses import GCPRLoss, MoCoLoss
from r2d2lib.models.vlp import DualEncoderModel
from r2d2lib.registry import MODELS
from r2d2lib.version import __version__

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
# The tokenizer entry of a saved config: the folder that holds config.json.
TOKENIZER_IN_FOLDER = '.'
# State dict prefixes of training-only modules (their config keys: building.TRAINING_ONLY_ARGS).
TRAINING_STATE = ('teacher.', 'queue.', 'image_centre.', 'text_centre.')


class PretrainedConfigError(ValueError):
    """Raised when a config.json is not an r2d2lib model config of the requested class."""


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


def inference_contrastive_loss(loss: nn.Module) -> Tuple[Optional[dict], Dict[str, Tensor]]:
    """Config of a queue-free replacement of ``loss`` (None: keep it) and state to add for it."""
    if not getattr(loss, 'requires_queue', False):
        return None, {}
    # the config's temperature only initialises; the weights carry the value (both kinds of ``temp``)
    temperature = config_temperature(loss.temperature.detach())
    if isinstance(loss, GCPRLoss):  # TargetDistillLoss: GCPR + distillation targets
        return dict(type='GCPRLoss', temperature=temperature, learnable=isinstance(loss.temp, nn.Parameter),
                    temperature_range=list(loss.temperature_range)), {}
    if isinstance(loss, MoCoLoss):  # its temperature is a non-persistent buffer: GCPR's is saved
        return (dict(type='GCPRLoss', temperature=temperature, learnable=False),
                {'contrastive_loss.temp': loss.temp.detach().clone()})
    raise NotImplementedError(f'no queue-free inference form of {type(loss).__name__} is known; add it to '
                              'r2d2lib.apis.hub.inference_contrastive_loss')


def _default(cls: type, name: str) -> Any:
    return inspect.signature(cls.__init__).parameters[name].default


def export_config(model: DualEncoderModel, model_config: Optional[dict] = None) -> Dict[str, Any]:
    """The content of config.json for ``model`` (built from ``model_config`` or its own record)."""
    cfg = _json_value(model.model_config if model_config is None else model_config, 'model')
    cfg.setdefault('type', type(model).__name__)
    if cfg['type'] != type(model).__name__:
        raise ValueError(f"model_config describes {cfg['type']} but the model is a {type(model).__name__}")
    cfg = inference_config(cfg)
    loss_cfg, _ = inference_contrastive_loss(model.contrastive_loss)
    if loss_cfg is not None:
        cfg['contrastive_loss'] = loss_cfg
    preprocessor = model.data_preprocessor
    dp_cfg = cfg.get('data_preprocessor') or dict(type=type(preprocessor).__name__)
    dp_cfg['tokenizer'] = dict(name_or_path=TOKENIZER_IN_FOLDER)
    cfg['data_preprocessor'] = dp_cfg
    dp_type = type(preprocessor)
    preprocessing = dict(image_size=preprocessor.image_size,
                         mean=list(dp_cfg.get('mean', _default(dp_type, 'mean'))),
                         std=list(dp_cfg.get('std', _default(dp_type, 'std'))),
                         max_length=preprocessor.max_length)
    return dict(architecture=type(model).__name__, r2d2lib_version=__version__, model=cfg,
                preprocessing=preprocessing)


def export_state_dict(model: DualEncoderModel) -> Dict[str, Tensor]:
    """The inference weights: no training-only state; CPU, contiguous, no shared storage."""
    state: Dict[str, Tensor] = {}
    storages = set()
    _, extra = inference_contrastive_loss(model.contrastive_loss)
    for key, tensor in {**model.state_dict(), **extra}.items():
        if key.startswith(TRAINING_STATE):
            continue
        tensor = tensor.detach().cpu().contiguous()
        storage = tensor.untyped_storage()
        # safetensors refuses tensors that share memory (tied weights, views): give each its own
        if storage.data_ptr() in storages or storage.nbytes() != tensor.numel() * tensor.element_size():
            tensor = tensor.clone()
        storages.add(tensor.untyped_storage().data_ptr())
        state[key] = tensor
    return state


def _build(model_cfg: dict) -> DualEncoderModel:
    return MODELS.build({**model_cfg, '_scope_': 'r2d2lib'})


def _check_export(config: dict, state: Dict[str, Tensor], folder: Path) -> None:
    """The exported config must rebuild a model (on the meta device) whose keys are the exported ones."""
    with torch.device('meta'):
        reference = _build(config['model']).state_dict()
    mismatched = [(k, v.shape, reference[k].shape) for k, v in state.items()
                  if k in reference and v.shape != reference[k].shape]
    check_state_dict_keys(reference.keys() - state.keys(), state.keys() - reference.keys(),
                          f'the export to {folder} (config.json vs weights)', mismatched=mismatched)


def save_pretrained(model: DualEncoderModel, save_directory: PathLike, model_config: Optional[dict] = None,
                    model_card: Optional[dict] = None) -> Path:
    """Write ``model`` for inference to ``save_directory`` (see the module doc); returns the folder.

    Args:
        model: a :class:`DualEncoderModel` or subclass (R2D2Model), unwrapped (not DDP).
        save_directory: created if needed; files of the same names are replaced.
        model_config: the MODELS config of ``model``; defaults to the arguments it was
            built with (:attr:`DualEncoderModel.model_config`).
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
    num_parameters = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(TRAINING_STATE))
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
                               f'them to r2d2lib.apis.hub.TOKENIZER_FILES (nothing was written to {folder})')
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
        raise ValueError(f'{path} is a file; from_pretrained takes a folder written by save_pretrained or '
                         'a Hub repo id (use load_local_checkpoint for a checkpoint file)')
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


def read_config(folder: Path, model_class: type = DualEncoderModel) -> Dict[str, Any]:
    """config.json of ``folder``, checked to describe ``model_class`` or a subclass of it."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f'{folder} has no {CONFIG_NAME}: not a folder written by save_pretrained')
    try:
        config = json.loads(path.read_text(encoding='utf-8'))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PretrainedConfigError(f'{path} is not valid JSON: {error}') from error
    for key, kind in (('architecture', str), ('model', dict)):
        if not isinstance(config, dict) or not isinstance(config.get(key), kind):
            raise PretrainedConfigError(f'{path} has no "{key}" {kind.__name__}: not an r2d2lib model config '
                                        '(written by save_pretrained)')
    architecture = config['architecture']
    cls = MODELS.get(architecture)
    if not (isinstance(cls, type) and issubclass(cls, DualEncoderModel)):
        raise PretrainedConfigError(f'{path}: "architecture" is {architecture!r}, which is not an r2d2lib '
                                    'model (DualEncoderModel or a subclass such as R2D2Model)')
    if not issubclass(cls, model_class):
        raise PretrainedConfigError(f'{CONFIG_NAME} at {folder} describes {architecture}, not '
                                    f'{model_class.__name__}')
    if config['model'].get('type') != architecture:
        raise PretrainedConfigError(f'{path}: "model.type" is {config["model"].get("type")!r} but '
                                    f'"architecture" is {architecture!r}')
    return config


def _with_local_tokenizer(model_cfg: dict, folder: Path) -> dict:
    """``model_cfg`` with a folder-relative tokenizer path (``'.'``, ``'./x'``) made absolute."""
    tokenizer = (model_cfg.get('data_preprocessor') or {}).get('tokenizer') or {}
    ref = tokenizer.get('name_or_path')
    if isinstance(ref, str) and (ref == '.' or ref.startswith('./')):
        local = dict(tokenizer, name_or_path=str(folder / ref))
        dp_cfg = dict(model_cfg['data_preprocessor'], tokenizer=local)
        model_cfg = dict(model_cfg, data_preprocessor=dp_cfg)
    return model_cfg


def from_pretrained(name_or_path: PathLike, revision: Optional[str] = None,
                    cache_dir: Optional[PathLike] = None, local_files_only: Optional[bool] = None,
                    token: Optional[Union[str, bool]] = None,
                    device: Optional[Union[str, torch.device]] = None,
                    dtype: Optional[Union[str, torch.dtype]] = None,
                    model_class: type = DualEncoderModel) -> DualEncoderModel:
    """Rebuild a saved model from a local folder or a Hub repo and load its weights strictly.

    Args:
        name_or_path: a folder written by :func:`save_pretrained`, or a Hub repo id.
        revision, cache_dir, local_files_only, token: Hub options (see :func:`resolve_pretrained`).
        device: where to put the model (default: CPU).
        dtype: floating dtype of parameters and buffers (``torch.bfloat16`` or ``'bfloat16'``).
        model_class: the class config.json must describe, or a base of it.

    Returns:
        The model (of the class config.json names) in eval mode, tokenizer built.

    Raises:
        PretrainedConfigError: config.json is not an r2d2lib config of ``model_class``.
        PretrainedLoadError: missing / unexpected / wrong-shaped keys, or an unreadable
            weights file; the message names them and the file.
    """
    folder = resolve_pretrained(name_or_path, revision, cache_dir, local_files_only, token)
    config = read_config(folder, model_class)
    try:
        model = _build(_with_local_tokenizer(config['model'], folder))
    except (TypeError, KeyError, ValueError, AttributeError) as error:
        raise PretrainedConfigError(f'{folder / CONFIG_NAME}: "model" does not build a '
                                    f'{config["architecture"]}: {error}') from error
    weights = folder / WEIGHTS_NAME
    load_state_dict_strict(model, read_safetensors(weights), str(weights))
    model.data_preprocessor.tokenizer  # noqa: B018 (built now: missing tokenizer files fail here)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model.eval()


def load_local_checkpoint(model: nn.Module, path: PathLike, allow_pickle: bool = False) -> List[str]:
    """Load a local checkpoint (mmengine ``.pth`` or ``.safetensors``) into ``model`` strictly.

    The training-only state (``teacher.``, ``queue.``, ``image_centre.``, ``text_centre.``)
    of the checkpoint is dropped where ``model`` has no such module (an inference model
    from :func:`from_pretrained` or built from an exported config); everything else must
    match key for key. The file is read by
    :func:`~r2d2lib.converters.checkpoint_files.load_checkpoint_file`, as the converters read
    theirs: a ``.pth`` weights-only (tensors, plain data and mmengine's logging types); one that
    needs a full unpickle, which can run code from the file, only with ``allow_pickle=True``
    (else ``PickleRefusedError``). A ``{'state_dict': ...}`` wrapper and ``module.`` prefixes
    are removed. Returns the dropped keys.
    """
    checkpoint = load_checkpoint_file(path, allow_pickle)
    state = unwrap_state_dict(checkpoint, 'state_dict', 'an r2d2lib / mmengine checkpoint', path)
    absent = tuple(p for p in TRAINING_STATE if getattr(model, p[:-1], None) is None)
    return load_state_dict_strict(model, state, str(path), ignore_prefixes=absent)


# ----------------------------------------------------------------------------------- publish
def push_to_hub(model: DualEncoderModel, repo_id: str, commit_message: str = 'Upload r2d2lib model',
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
