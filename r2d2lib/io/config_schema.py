"""The closed schema of ``config.json``: an architecture described as data, checked before anything is built.

A saved model's ``config.json`` is read from folders and Hub repos that anybody can write. mmengine's
registries resolve an unknown dotted ``type`` by importing it (``{"type": "os.system"}`` would run), and
``_scope_`` switches registries; so no content of the file reaches a builder before it passed this check:

- the top level holds ``architecture`` (a model class registered in r2d2lib's ``MODELS``),
  ``r2d2lib_version``, ``model`` (that class's constructor arguments), ``preprocessing`` (facts for the
  user) and optionally ``converted_from``; nothing else;
- every ``type`` anywhere in ``model`` (also inside lists) is the exact name of a class registered in one
  of r2d2lib's own architecture registries (:data:`ARCHITECTURE_REGISTRIES`), looked up in their own
  tables: no dots, no import fallback, no parent registry, no callables;
- no key starts with ``_`` (mmengine directives such as ``_scope_``), and ``objective``, ``init_cfg`` and
  ``pretrained`` are absent or null (an architecture has no training objective, and its weights are in
  ``model.safetensors``: nothing is initialised from another file);
- the tokenizer is the one saved beside ``config.json`` (``{"name_or_path": "."}``).

Every refusal names the file and the key path, e.g.
``model.image_encoder.type: 'os.system' is not an r2d2lib component``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, Iterable

#: The tokenizer entry of a saved config: the folder that holds config.json.
TOKENIZER_IN_FOLDER = '.'
#: Top-level keys of config.json.
TOP_LEVEL_KEYS = ('architecture', 'r2d2lib_version', 'model', 'preprocessing', 'converted_from')
#: Keys that must be absent or null anywhere in ``model``.
NULL_ONLY_KEYS = ('objective', 'init_cfg', 'pretrained')
#: Model arguments of the format before the architecture/objective split (r2d2lib 0.1).
LEGACY_KEYS = ('contrastive_loss', 'fgr_loss', 'mlm_loss', 'fgd_loss', 'loss_weights', 'teacher', 'queue')
MIGRATE_COMMAND = 'python tools/migrate_pretrained.py'


def plain_data(value: Any) -> Any:
    """A copy of a config value as JSON-like data: mappings -> dicts, tuples and lists -> lists (a Python
    config writes ``temperature_range=(0.001, 0.5)``); other values as they are."""
    if isinstance(value, Mapping):
        return {key: plain_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(item) for item in value]
    return value


class PretrainedConfigError(ValueError):
    """A config.json that is not an r2d2lib architecture (the message names the file and key)."""


def architecture_registries() -> Dict[str, Any]:
    """The registries whose classes may appear in an exported architecture, populated.

    ``import_from_location`` imports the modules that registry.py lists for each (r2d2lib's own, fixed
    in code), never a name read from a file.
    """
    from r2d2lib.registry import ENCODERS, FUSIONS, HEADS, MODELS
    registries = dict(model=MODELS, encoder=ENCODERS, fusion=FUSIONS, head=HEADS)
    for registry in registries.values():
        registry.import_from_location()
    return registries


def is_architecture(cls: type) -> bool:
    """Whether a ``MODELS`` class is an architecture that config.json may name: one that exports itself
    (``save_pretrained``) and records its arguments (``model_config``), unlike a data preprocessor."""
    return isinstance(cls, type) and hasattr(cls, 'save_pretrained') and hasattr(cls, 'model_config')


def component_names() -> frozenset:
    """Every class name registered in r2d2lib's architecture registries (their own tables only)."""
    return frozenset(name for registry in architecture_registries().values()
                     for name in registry.module_dict)


def _check_value(value: Any, where: str, names: Iterable[str], errors: list) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            path = f'{where}.{key}'
            if not isinstance(key, str) or key.startswith('_'):
                errors.append(f'{path}: keys starting with "_" (mmengine directives such as _scope_) are '
                              'not allowed')
            elif key == 'type':
                if not isinstance(item, str) or item not in names:
                    errors.append(f'{path}: {item!r} is not an r2d2lib component (a class registered in '
                                  'r2d2lib\'s MODELS, ENCODERS, FUSIONS or HEADS, by its exact name)')
            elif key in NULL_ONLY_KEYS and item is not None:
                errors.append(f'{path}: must be null in config.json (an exported architecture has no '
                              'training objective and initialises nothing from other files)')
            else:
                _check_value(item, path, names, errors)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_value(item, f'{where}[{index}]', names, errors)
    elif not (value is None or isinstance(value, (str, bool, int, float))):
        errors.append(f'{where}: a {type(value).__name__} is not JSON data')


def check_model_config(model_cfg: Any, source: str, where: str = 'model') -> None:
    """Refuse a model config with anything but r2d2lib components and plain values (see the module doc).

    Raises:
        PretrainedConfigError: naming ``source`` and every offending key path.
    """
    errors: list = []
    if not isinstance(model_cfg, dict):
        errors.append(f'{where}: expected an object, got {type(model_cfg).__name__}')
    else:
        _check_value(model_cfg, where, component_names(), errors)
    if errors:
        raise PretrainedConfigError(f'{source} is refused (nothing was imported or built):\n  '
                                    + '\n  '.join(errors))


def check_pretrained_config(config: Any, source: str) -> Dict[str, Any]:
    """Validate a parsed config.json (see the module doc); returns it. Nothing is imported or built.

    Raises:
        PretrainedConfigError: naming ``source`` and the key path of the first problems.
    """
    if not isinstance(config, dict):
        raise PretrainedConfigError(f'{source}: expected a JSON object, got {type(config).__name__}')
    unknown = sorted(set(config) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise PretrainedConfigError(f'{source}: unknown top-level keys {unknown} '
                                    f'(allowed: {list(TOP_LEVEL_KEYS)})')
    architecture, model_cfg = config.get('architecture'), config.get('model')
    if not isinstance(architecture, str) or not isinstance(model_cfg, dict):
        raise PretrainedConfigError(f'{source} has no "architecture" string and "model" object: not an '
                                    'r2d2lib model config (written by save_pretrained)')
    legacy = sorted(set(model_cfg) & set(LEGACY_KEYS))
    if legacy:
        raise PretrainedConfigError(
            f'{source} was written by r2d2lib {config.get("r2d2lib_version", "< 0.2")}, before the training '
            f'objective left the architecture (it has model.{legacy[0]}). Migrate the folder with:\n'
            f'  {MIGRATE_COMMAND} FOLDER')
    models = architecture_registries()['model'].module_dict
    architectures = sorted(name for name, cls in models.items() if is_architecture(cls))
    if architecture not in architectures:
        raise PretrainedConfigError(f'{source}: architecture: {architecture!r} is not an r2d2lib model '
                                    f'(one of {architectures})')
    if model_cfg.get('type') != architecture:
        raise PretrainedConfigError(f'{source}: model.type is {model_cfg.get("type")!r} but architecture is '
                                    f'{architecture!r}')
    check_model_config(model_cfg, source)
    tokenizer = (model_cfg.get('data_preprocessor') or {}).get('tokenizer')
    if tokenizer is not None and tokenizer != {'name_or_path': TOKENIZER_IN_FOLDER}:
        raise PretrainedConfigError(f'{source}: model.data_preprocessor.tokenizer must be '
                                    f'{{"name_or_path": "{TOKENIZER_IN_FOLDER}"}} (the tokenizer saved '
                                    'beside '
                                    f'config.json), got {tokenizer!r}')
    return config
