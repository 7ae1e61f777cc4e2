"""Converters of third-party checkpoints into r2d2lib models."""
from .chinese_clip import convert_chinese_clip, model_config_from_hf
from .official_r2d2 import (
                            ARCH_CONFIGS,
                            build_converted_model,
                            build_inference_model,
                            convert_official_state_dict,
                            inference_model_config,
)

__all__ = ['ARCH_CONFIGS', 'build_converted_model', 'build_inference_model',
           'convert_chinese_clip', 'convert_official_state_dict', 'inference_model_config',
           'model_config_from_hf']
