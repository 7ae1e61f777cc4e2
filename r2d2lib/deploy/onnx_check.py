"""Run exported graphs with onnxruntime: parity with PyTorch and the CPU speed of both.

:func:`check_parity` feeds the same random inputs (:func:`~r2d2lib.deploy.onnx_export.example_inputs`,
ragged padding included) to the PyTorch model and to each ONNX graph, at several batch sizes and
text lengths, and records the largest absolute difference of every output. :func:`benchmark_speed`
times both on the same inputs with the same number of threads.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .onnx_export import GRAPH_FILES, example_inputs, export_module, graph_specs

#: largest absolute difference accepted between ONNX and PyTorch outputs in fp32
PARITY_ATOL = 1e-4


def ort_session(path: Union[str, Path], num_threads: Optional[int] = None):
    """An onnxruntime CPU session of ``path`` (``num_threads`` intra-op threads, one inter-op)."""
    import onnxruntime as ort
    if not Path(path).is_file():
        raise FileNotFoundError(f'{path} does not exist: export the model first (tools/export_onnx.py)')
    options = ort.SessionOptions()
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=['CPUExecutionProvider'])


def _feeds(spec_inputs: Sequence[str], inputs: Dict[str, torch.Tensor]) -> Dict[str, np.ndarray]:
    return {name: inputs[name].detach().cpu().numpy() for name in spec_inputs}


@dataclass
class ParityResult:
    """Largest |ONNX - PyTorch| of one output of one graph at one input shape."""

    part: str
    output: str
    batch_size: int
    text_length: int
    max_abs_error: float

    @property
    def ok(self) -> bool:
        return self.max_abs_error < PARITY_ATOL


def check_parity(model: nn.Module, onnx_dir: Union[str, Path], parts: Sequence[str],
                 batch_sizes: Sequence[int] = (1, 7), text_lengths: Optional[Sequence[int]] = None,
                 seed: int = 0) -> List[ParityResult]:
    """Compare every output of the graphs of ``parts`` in ``onnx_dir`` with PyTorch's.

    ``text_lengths`` defaults to the model's ``max_length`` (what the tokenizer pads to) and a
    short length (5); the image graph runs once per batch size since text length does not reach it.
    """
    model.eval()
    if text_lengths is None:
        max_length = model.data_preprocessor.max_length
        text_lengths = sorted({max_length, min(5, max_length)}, reverse=True)
    specs = graph_specs(parts)
    sessions = {part: ort_session(Path(onnx_dir) / GRAPH_FILES[part]) for part in parts}
    results: List[ParityResult] = []
    generator = torch.Generator().manual_seed(seed)
    for batch_size in batch_sizes:
        for index, length in enumerate(text_lengths):
            inputs = example_inputs(model, batch_size, length, generator)
            for part, spec in specs.items():
                if part == 'image' and index > 0:
                    continue
                with torch.no_grad():
                    expected = export_module(model, part)(*(inputs[name] for name in spec.inputs))
                expected = expected if isinstance(expected, tuple) else (expected,)
                got = sessions[part].run(spec.outputs, _feeds(spec.inputs, inputs))
                for name, want, have in zip(spec.outputs, expected, got):
                    if tuple(want.shape) != have.shape:
                        raise AssertionError(f'{part} output {name}: ONNX shape {have.shape} vs PyTorch '
                                             f'{tuple(want.shape)} (batch {batch_size}, length {length})')
                    error = float(np.abs(want.float().cpu().numpy() - have).max())
                    results.append(ParityResult(part, name, batch_size, length, error))
    return results


def format_parity(results: Sequence[ParityResult]) -> str:
    """The parity results as a text table."""
    lines = [f'{"graph":<10}{"output":<14}{"batch":>6}{"length":>8}{"max |onnx - torch|":>21}  ok',
             '-' * 63]
    for r in results:
        lines.append(f'{r.part:<10}{r.output:<14}{r.batch_size:>6}{r.text_length:>8}'
                     f'{r.max_abs_error:>21.3e}  {"yes" if r.ok else "NO"}')
    return '\n'.join(lines)


def _interleaved_median_ms(runs: Sequence, repeats: int, warmup: int) -> List[float]:
    """Median milliseconds of each callable in ``runs``, timed in turns (run 1, run 2, run 1, ...) so
    that a change of machine load during the measurement reaches all of them alike."""
    for _ in range(warmup):
        for run in runs:
            run()
    times: List[List[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, record in zip(runs, times):
            start = time.perf_counter()
            run()
            record.append(time.perf_counter() - start)
    return [1000 * statistics.median(record) for record in times]


def benchmark_speed(model: nn.Module, onnx_dir: Union[str, Path], parts: Sequence[str], batch_size: int = 8,
                    num_threads: int = 1, repeats: int = 10, warmup: int = 2,
                    text_length: Optional[int] = None) -> Dict[str, dict]:
    """Median milliseconds per batch of PyTorch (eager, ``inference_mode``) and onnxruntime, per graph.

    Both get the same inputs and ``num_threads`` threads (``torch.set_num_threads``; ORT's
    intra-op pool, one inter-op thread), and run in turns (see :func:`_interleaved_median_ms`).
    Returns ``{part: dict(torch_ms, onnx_ms, speedup)}`` with ``speedup = torch_ms / onnx_ms``
    (above 1: ONNX Runtime is faster).
    """
    model.eval()
    text_length = text_length or model.data_preprocessor.max_length
    inputs = example_inputs(model, batch_size, text_length, torch.Generator().manual_seed(0))
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    results: Dict[str, dict] = {}
    try:
        for part, spec in graph_specs(parts).items():
            wrapper = export_module(model, part)
            args = tuple(inputs[name] for name in spec.inputs)
            session = ort_session(Path(onnx_dir) / GRAPH_FILES[part], num_threads)
            feeds = _feeds(spec.inputs, inputs)

            def run_torch():
                with torch.inference_mode():
                    wrapper(*args)

            torch_ms, onnx_ms = _interleaved_median_ms(
                [run_torch, lambda: session.run(spec.outputs, feeds)], repeats, warmup)
            results[part] = dict(torch_ms=torch_ms, onnx_ms=onnx_ms, speedup=torch_ms / onnx_ms,
                                 batch_size=batch_size, text_length=text_length, num_threads=num_threads)
    finally:
        torch.set_num_threads(previous_threads)
    return results


def format_speed(results: Dict[str, dict]) -> str:
    """The speed results as a text table."""
    lines = [f'{"graph":<10}{"batch":>6}{"length":>8}{"threads":>9}{"torch ms":>11}{"onnx ms":>10}'
             f'{"speed-up":>10}', '-' * 64]
    for part, r in results.items():
        lines.append(f'{part:<10}{r["batch_size"]:>6}{r["text_length"]:>8}{r["num_threads"]:>9}'
                     f'{r["torch_ms"]:>11.2f}{r["onnx_ms"]:>10.2f}{r["speedup"]:>9.2f}x')
    return '\n'.join(lines)
