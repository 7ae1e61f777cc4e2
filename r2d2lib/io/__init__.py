"""Reading and writing models: checkpoint files under one trust policy, the closed config.json schema,
the Hub layout (config.json + model.safetensors). Below ``r2d2lib.models``: it reads the registries and
never imports the models."""
from .checkpoint import (
    CheckpointFileError,
    PickleRefusedError,
    PretrainedLoadError,
    load_checkpoint_file,
    load_state_dict_strict,
    load_weights,
)
from .config_schema import PretrainedConfigError, check_model_config, check_pretrained_config
from .pretrained import load_pretrained, push_to_hub, save_pretrained

__all__ = ['CheckpointFileError', 'PickleRefusedError', 'PretrainedConfigError', 'PretrainedLoadError',
           'check_model_config', 'check_pretrained_config', 'load_checkpoint_file', 'load_pretrained',
           'load_state_dict_strict', 'load_weights', 'push_to_hub', 'save_pretrained']
