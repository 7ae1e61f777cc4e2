"""``infer``: encode_image / encode_text / match throughput, ours against ChineseCLIPModel's towers.

    python tools/benchmark.py infer --config configs/r2d2/vitb_2.3m.py --batch-size 16
        [--iters 5] [--warmup 1] [--rounds 2] [--amp fp32|bf16|fp16] [--device cpu|cuda]
        [--threads N] [--peak-tflops T] [--json OUT] [--cfg-options key=value ...]

Ours is the config's model (random weights, eval mode, ``torch.inference_mode``):
``encode_image`` (images/s), ``encode_text`` (texts/s) and ``match`` (pairs/s: both
towers and both cross encoders on B pairs). The baseline is transformers'
``ChineseCLIPModel`` with towers of the same size (the ViT and the BERT read from our
encoders' configs, ``projection_dim`` = our embedding width, random weights):
``get_image_features``, ``get_text_features`` and, for ``match``, both towers and the
cosine of each pair, which is how a dual encoder scores a pair (it has no cross encoder, so
the ``match`` ratio is the price of R2D2's re-ranking, not a like-for-like comparison).

Inputs are synthetic (``common.synthetic_inputs``), the same for both. Ops alternate
(ours, baseline) over ``--rounds``; each figure is the median over every timed batch, in
wall-clock seconds (``*_per_s``) and in CPU seconds of the process (``*_per_cpu_s``, robust to
other processes on a shared machine).
Output: one JSON line per method (items/s and FLOPs per item of each op, achieved
TFLOP/s and MFU where the device's peak is known) and a ``ratio`` line (ours / baseline).
"""
import argparse
import statistics
import tempfile
import time
from contextlib import nullcontext
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F
from mmengine.config import DictAction
from transformers import ChineseCLIPConfig, ChineseCLIPModel

from r2d2lib.engine import load_config

from .common import build_model, positive_int, report_lines, synthetic_inputs, use_local_tokenizer
from .flops import count_flops, peak_tflops, utilisation

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
OPS = ('encode_image', 'encode_text', 'match')
TEXT_KEYS = ('vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size',
             'hidden_act', 'max_position_embeddings', 'type_vocab_size', 'layer_norm_eps', 'pad_token_id')
VISION_KEYS = ('hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'image_size',
               'patch_size', 'hidden_act', 'layer_norm_eps', 'num_channels')


def chinese_clip_like(model) -> ChineseCLIPModel:
    """A random-weight ChineseCLIPModel whose towers have our encoders' sizes."""
    text = getattr(getattr(model.text_encoder, 'model', None), 'config', None)
    vision = getattr(getattr(model.image_encoder, 'model', None), 'config', None)
    if text is None or vision is None or not hasattr(vision, 'patch_size') or not hasattr(text, 'vocab_size'):
        raise SystemExit('infer compares with ChineseCLIPModel: the config needs HFCLIPVisionEncoder and '
                         'HFBertEncoder towers')
    config = ChineseCLIPConfig(
        text_config={key: getattr(text, key) for key in TEXT_KEYS},
        vision_config={key: getattr(vision, key) for key in VISION_KEYS},
        projection_dim=_embed_dim(model))
    return ChineseCLIPModel(config)


def _embed_dim(model) -> int:
    """Width of the retrieval embeddings of ``model``."""
    with torch.inference_mode():
        return model.text_proj(torch.zeros(1, model.text_encoder.width)).shape[-1]


def operations(model, baseline, inputs: dict) -> Dict[str, Dict[str, Callable[[], object]]]:
    """op -> method -> a call on the batch."""
    images, ids, mask = inputs['images'], inputs['input_ids'], inputs['attention_mask']

    def clip_image():
        return F.normalize(_features(baseline.get_image_features(pixel_values=images)), dim=-1)

    def clip_text():
        return F.normalize(_features(baseline.get_text_features(input_ids=ids, attention_mask=mask)), dim=-1)

    return {
        'encode_image': dict(ours=lambda: model.encode_image(images), chinese_clip=clip_image),
        'encode_text': dict(ours=lambda: model.encode_text(ids, mask), chinese_clip=clip_text),
        'match': dict(ours=lambda: model.match(images, ids, mask),
                      chinese_clip=lambda: (clip_image() * clip_text()).sum(-1)),
    }


def _features(output) -> torch.Tensor:
    """transformers 5 may return a model output instead of a tensor from get_*_features."""
    if isinstance(output, torch.Tensor):
        return output
    return output.pooler_output if getattr(output, 'pooler_output', None) is not None else output[0]


def _per_s(figures: dict, suffix: str) -> float:
    """The items/s figure of one op whose key ends with ``suffix`` ('_per_s' or '_per_cpu_s')."""
    return next(value for key, value in figures.items()
                if key.endswith(suffix) and key != 's_per_batch_median')


def run(args: argparse.Namespace) -> int:
    """Run ``infer``."""
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: CUDA is not available')
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = load_config(args.config, args.cfg_options)
    with tempfile.TemporaryDirectory(prefix='r2d2_benchmark_') as tmp_dir:
        replaced = use_local_tokenizer(cfg, tmp_dir)
        torch.manual_seed(args.seed)
        model = build_model(cfg, device).eval()
    if not hasattr(model, 'match'):
        raise SystemExit(f'infer times match(): {args.config} builds {type(model).__name__}, not R2D2Model')
    baseline = chinese_clip_like(model).to(device).eval()
    inputs = synthetic_inputs(model, args.batch_size, 0, torch.Generator().manual_seed(args.seed), device)
    calls = operations(model, baseline, inputs)
    autocast = (torch.autocast(device.type, dtype=AMP_DTYPES[args.amp]) if args.amp in AMP_DTYPES
                else nullcontext())
    times: Dict[str, Dict[str, List[float]]] = {op: {'ours': [], 'chinese_clip': []} for op in OPS}
    cpu_times: Dict[str, Dict[str, List[float]]] = {op: {'ours': [], 'chinese_clip': []} for op in OPS}
    flops: Dict[str, Dict[str, int]] = {op: {} for op in OPS}
    with torch.inference_mode(), autocast:
        for op in OPS:
            for method, call in calls[op].items():
                for _ in range(args.warmup):
                    call()
                flops[op][method] = count_flops(call)
        for _ in range(args.rounds):
            for op in OPS:
                for method, call in calls[op].items():
                    for _ in range(args.iters):
                        start, cpu_start = time.perf_counter(), time.process_time()
                        call()
                        if device.type == 'cuda':
                            torch.cuda.synchronize(device)
                        times[op][method].append(time.perf_counter() - start)
                        cpu_times[op][method].append(time.process_time() - cpu_start)
    peak = peak_tflops(device, args.amp, args.peak_tflops)
    lines = []
    for method in ('ours', 'chinese_clip'):
        line = dict(benchmark='infer', method=method, config=args.config, device=args.device,
                    precision=args.amp, threads=args.threads, batch_size=args.batch_size)
        for op in OPS:
            median = statistics.median(times[op][method])
            unit = {'encode_image': 'images', 'encode_text': 'texts', 'match': 'pairs'}[op]
            line[op] = {f'{unit}_per_s': args.batch_size / median, 's_per_batch_median': median,
                        f'{unit}_per_cpu_s': args.batch_size / statistics.median(cpu_times[op][method]),
                        'flops_per_item': flops[op][method] / args.batch_size,
                        **utilisation(flops[op][method], median, peak)}
        lines.append(line)
    ours, clip = lines
    lines.append(dict(benchmark='infer', method='ratio', of='ours / chinese_clip',
                      **{op: dict(throughput=_per_s(ours[op], '_per_s') / _per_s(clip[op], '_per_s'),
                                  throughput_cpu=(_per_s(ours[op], '_per_cpu_s')
                                                  / _per_s(clip[op], '_per_cpu_s')),
                                  flops_per_item=ours[op]['flops_per_item'] / clip[op]['flops_per_item'])
                         for op in OPS}))
    report_lines(lines, args.json, tokenizer_replaced=replaced)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``infer`` options."""
    parser.add_argument('--config', required=True, help='an R2D2 config (configs/r2d2/vitb_2.3m.py)')
    parser.add_argument('--batch-size', type=positive_int, default=16, help='items per call (default 16)')
    parser.add_argument('--iters', type=positive_int, default=5, help='timed calls per round (default 5)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed calls first (default 1)')
    parser.add_argument('--rounds', type=positive_int, default=1, help='alternations (default 1)')
    parser.add_argument('--amp', choices=['fp32', *AMP_DTYPES], default='fp32', help='autocast precision')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--threads', type=positive_int, default=torch.get_num_threads(),
                        help='torch CPU threads (default: torch\'s)')
    parser.add_argument('--peak-tflops', type=float, default=None,
                        help='peak TFLOP/s of the device for MFU (known GPUs: looked up)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', metavar='OUT', help='also write every line to this JSON file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config keys')
