"""Export a model to ONNX (image tower, text tower, R2D2's matching head), check it against PyTorch.

    python tools/export_onnx.py work_dirs/demo/pretrained --out work_dirs/onnx/demo
    python tools/export_onnx.py configs/demo/r2d2_tiny_shapes.py --checkpoint work_dirs/demo/epoch_8.pth \
        --allow-pickle --out work_dirs/onnx/demo --benchmark
    python tools/export_onnx.py r2d2_vitb_23m --random-weights --no-tokenizer --out work_dirs/onnx/vitb \
        --benchmark

The model is a folder written by ``save_pretrained`` (or a Hub repo id), a model-zoo name
(its released weights, or ``--random-weights``), or a config file with ``--checkpoint``.
After the export, onnxruntime runs every graph at batch sizes 1 and 7 and two text lengths on
the same random inputs as PyTorch and the largest absolute difference of each output is
printed; the tool exits with status 1 if one reaches 1e-4. ``--benchmark`` also times both
on the CPU with the same inputs and thread count. See docs/deployment.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import r2d2lib  # registers the models; load_model, get_model, list_models
from r2d2lib.deploy import (
    PARITY_ATOL,
    PARTS,
    benchmark_speed,
    check_parity,
    export_onnx,
    format_parity,
    format_speed,
    has_matching,
)


def load_model(source: str, checkpoint: str | None = None, allow_pickle: bool = False,
               random_weights: bool = False) -> torch.nn.Module:
    """The model named by ``source`` (folder / Hub id, model-zoo name, or config file), in eval mode:
    :func:`r2d2lib.load_model`, or the architecture with random weights (``random_weights``)."""
    is_config = Path(source).suffix == '.py'
    if not random_weights:
        if is_config and checkpoint is None:
            raise ValueError(f'{source} is a config: give --checkpoint (or --random-weights)')
        return r2d2lib.load_model(source, checkpoint, allow_pickle=allow_pickle)
    if checkpoint is not None:
        raise ValueError('--random-weights and --checkpoint exclude each other')
    if is_config:
        from mmengine.config import Config

        from r2d2lib.io.pretrained import architecture_config, build_architecture
        if not Path(source).is_file():
            raise FileNotFoundError(f'config file {source} does not exist')
        model_cfg = Config.fromfile(source).model.to_dict()
        return build_architecture(architecture_config(model_cfg), f'{source} (model)').eval()
    if source in r2d2lib.list_models():
        return r2d2lib.get_model(source)
    raise ValueError('--random-weights needs a model-zoo name or a config file, not a saved folder')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('model',
                        help='from_pretrained folder or Hub id, model-zoo name, or config file (.py)')
    parser.add_argument('--checkpoint', help='checkpoint file (.pth / .safetensors) for a config file')
    parser.add_argument('--allow-pickle', action='store_true',
                        help='unpickle a checkpoint that weights-only loading refuses (trusted files only)')
    parser.add_argument('--random-weights', action='store_true',
                        help='a model-zoo name or config with random weights (to measure speed)')
    parser.add_argument('--out', required=True, help='output folder of the .onnx files and export.json')
    parser.add_argument('--parts', nargs='+', choices=PARTS, default=None,
                        help='graphs to export (default: image and text, plus matching for R2D2 models)')
    parser.add_argument('--opset', type=int, default=None, help="ONNX opset (default: the exporter's)")
    parser.add_argument('--no-tokenizer', action='store_true', help='do not save the tokenizer files')
    parser.add_argument('--batch-sizes', nargs='+', type=int, default=[1, 7], help='parity check batch sizes')
    parser.add_argument('--text-lengths', nargs='+', type=int, default=None,
                        help='parity check text lengths (default: max_length and 5)')
    parser.add_argument('--no-check', action='store_true', help='skip the parity check')
    parser.add_argument('--benchmark', action='store_true', help='time onnxruntime vs PyTorch on the CPU')
    parser.add_argument('--bench-batch', type=int, default=8, help='benchmark batch size')
    parser.add_argument('--threads', type=int, default=1, help='threads of both runtimes in the benchmark')
    parser.add_argument('--repeats', type=int, default=10, help='timed runs per graph (median reported)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    model = load_model(args.model, args.checkpoint, args.allow_pickle, args.random_weights)
    if args.parts and 'matching' in args.parts and not has_matching(model):
        raise SystemExit(f'{type(model).__name__} has no cross encoders: drop "matching" from --parts')
    print(f'exporting {type(model).__name__} from {args.model} to {args.out}', flush=True)
    paths = export_onnx(model, args.out, parts=args.parts, opset_version=args.opset,
                        save_tokenizer=not args.no_tokenizer)
    for part, path in paths.items():
        print(f'  {part:<9} {path} ({path.stat().st_size / 2**20:.1f} MiB)')
    report = {}
    status = 0
    if not args.no_check:
        results = check_parity(model, args.out, list(paths), batch_sizes=args.batch_sizes,
                               text_lengths=args.text_lengths)
        print(f'\nparity with PyTorch (fp32, tolerance {PARITY_ATOL:g}):\n{format_parity(results)}')
        report['parity'] = [dict(vars(r), ok=r.ok) for r in results]
        failed = [r for r in results if not r.ok]
        if failed:
            print(f'\nPARITY FAILED for {len(failed)} outputs (max abs error '
                  f'{max(r.max_abs_error for r in failed):.3e} >= {PARITY_ATOL:g})', file=sys.stderr)
            status = 1
        else:
            print(f'\nparity OK: max abs error {max(r.max_abs_error for r in results):.3e}')
    if args.benchmark:
        speed = benchmark_speed(model, args.out, list(paths), batch_size=args.bench_batch,
                                num_threads=args.threads, repeats=args.repeats)
        print(f'\nCPU speed, median of {args.repeats} runs:\n{format_speed(speed)}')
        report['speed'] = speed
    if report:
        (Path(args.out) / 'check.json').write_text(json.dumps(report, indent=2) + '\n', encoding='utf-8')
    return status


if __name__ == '__main__':
    sys.exit(main())
