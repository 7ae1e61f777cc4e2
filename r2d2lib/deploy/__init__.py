"""Deployment: ONNX export of the towers and the matching head, parity and speed checks."""
from .onnx_check import (
                         PARITY_ATOL,
                         ParityResult,
                         benchmark_speed,
                         check_parity,
                         format_parity,
                         format_speed,
                         ort_session,
)
from .onnx_export import GRAPH_FILES, METADATA_FILE, PARTS, example_inputs, export_onnx, has_matching

__all__ = ['GRAPH_FILES', 'METADATA_FILE', 'PARITY_ATOL', 'PARTS', 'ParityResult', 'benchmark_speed',
           'check_parity', 'example_inputs', 'export_onnx', 'format_parity', 'format_speed', 'has_matching',
           'ort_session']
