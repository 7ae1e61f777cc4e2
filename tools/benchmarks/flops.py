"""FLOP counting (``torch.utils.flop_counter``) and model FLOP utilisation for the benchmarks."""
from typing import Callable, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

# Dense peak TFLOP/s per GPU (no sparsity) by name fragment and dtype; MFU is achieved / peak.
# The first fragment found in torch.cuda.get_device_name() wins, so the PCIe / NVL cards come first.
# Sources: NVIDIA's datasheets, which print the 2:4-sparsity figures (halved here): H200 (SXM: BF16
# 1,979, TF32 989; NVL: 1,671 / 835), H100 (SXM: 1,979 / 989; NVL: 1,671 / 835; PCIe: 1,513 / 756),
# A100 (624 / 312 with sparsity, 312 / 156 dense).
GPU_PEAK_TFLOPS = {
    'H200 NVL': {'bf16': 835.5, 'fp16': 835.5, 'fp32': 417.5},
    'H100 NVL': {'bf16': 835.5, 'fp16': 835.5, 'fp32': 417.5},
    'H100 PCIe': {'bf16': 756.5, 'fp16': 756.5, 'fp32': 378.0},
    'H200': {'bf16': 989.4, 'fp16': 989.4, 'fp32': 494.7},  # fp32 as TF32 tensor cores
    'H100': {'bf16': 989.4, 'fp16': 989.4, 'fp32': 494.7},
    'A100': {'bf16': 312.0, 'fp16': 312.0, 'fp32': 156.0},
}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of everything ``fn()`` runs (forward and backward), counted by ``FlopCounterMode``.

    Matmuls, convolutions and attention (eager and SDPA kernels) are counted; element-wise
    work is not, as usual for MFU.
    """
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def peak_tflops(device: torch.device, precision: str, override: Optional[float] = None) -> Optional[float]:
    """The device's dense peak TFLOP/s for ``precision`` ('fp32', 'bf16', 'fp16'); None if unknown."""
    if override:
        return override
    if device.type != 'cuda':
        return None
    name = torch.cuda.get_device_name(device)
    for fragment, peaks in GPU_PEAK_TFLOPS.items():
        if fragment in name:
            return peaks[precision]
    return None


def utilisation(flops_per_step: int, seconds_per_step: float, peak: Optional[float]) -> dict:
    """Achieved TFLOP/s and MFU (None without a known peak)."""
    achieved = flops_per_step / seconds_per_step / 1e12
    return dict(achieved_tflops=achieved, peak_tflops=peak, mfu=achieved / peak if peak else None)
