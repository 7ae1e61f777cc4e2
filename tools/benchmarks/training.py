"""``train``: training steps with the optimizer, ours against the official step, in the same run.

    python tools/benchmark.py train --config configs/r2d2/vitb_2.3m.py --batch-size 8
        [--methods ours-gcpr-fgr official ours] [--iters 3] [--warmup 1] [--rounds 2]
        [--amp fp32|bf16|fp16] [--compile] [--device cpu|cuda] [--peak-tflops T] [--threads 1]
        [--json OUT] [--cfg-options key=value ...]

Methods (each builds the config's model with the same seed, random weights, and trains on the
same synthetic batches; see ``common.synthetic_inputs``); a step is the forward with
``mode='loss'``, backward, AdamW and, with a teacher, its EMA:

* ``official``: the official training step line for line (``official_step.official_loss``:
  ``R2D2_Retrieval.forward`` of github.com/yuxie11/R2D2 ``models/r2d2_retrieval.py`` at c7127fa,
  lines 23-142: GCPR and FGR only, per-row ``torch.multinomial(...).item()``, two cross-encoder
  passes, eager attention);
* ``ours-gcpr-fgr``: :class:`~r2d2lib.models.vlp.R2D2Model` with the same objective (GCPR + FGR):
  the equal-objective comparison;
* ``ours``: the config's model and objective (Eq. 8), compared with ``official`` separately since
  it computes more terms.

Each (method, round) runs in a forked child process: ``--warmup`` steps, then ``--iters``
timed steps, then (first round only) one more step under ``torch.utils.flop_counter.FlopCounterMode``.
Rounds alternate the methods so that a shared machine's load hits them alike; the reported step
time is the median over every timed step of every round, in wall-clock seconds
(``samples_per_s``) and in CPU seconds of the process (``samples_per_cpu_s``: the work done, which
other processes on a shared machine disturb far less than the wall clock).

Memory: on CPU the peak RSS of the child (``VmHWM``) over the timed steps, its mark reset after the
warm-up (``peak_mib``), and that peak above the RSS before the first timed step (``step_peak_mib``);
on CUDA the peak allocated memory of the timed steps.

Output: one JSON line per method, then ``ratio`` lines against ``official`` (> 1 is better for
samples/s, < 1 for memory and FLOPs). The hard-negative draw alone: ``hard-negatives``.
"""
import argparse
import multiprocessing
import statistics
import tempfile
import time
import traceback
from typing import Dict, List

import torch
from mmengine.config import DictAction
from mmengine.registry import init_default_scope

from r2d2lib.engine import load_config
from r2d2lib.registry import MODELS

from .common import (
    count_params,
    fill_queue,
    positive_int,
    report_lines,
    reset_peak_rss,
    rss_mib,
    synthetic_inputs,
    use_local_tokenizer,
    vm_hwm_mib,
)
from .flops import count_flops, peak_tflops, utilisation
from .losses import summarize
from .official_step import GCPR_FGR, eager_model_config, make_official, official_loss

METHODS = ('ours-gcpr-fgr', 'official', 'ours')
AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
MIB = 2 ** 20


# ----------------------------------------------------------------- one method in a child process
def build_method(cfg, method: str, device: torch.device, seed: int, compile_backend):
    """The config's model for ``method``, random weights (seeded), tokenizer built, in train mode."""
    init_default_scope('r2d2lib')
    torch.manual_seed(seed)
    model_cfg = cfg.model if method == 'ours' else dict(cfg.model, objective=dict(GCPR_FGR))
    if method == 'official':
        model_cfg = eager_model_config(model_cfg)
    model = MODELS.build(model_cfg)
    if model.objective is not None:
        model.objective.sync_teacher(model)
    if method == 'official':
        model = make_official(model)
    elif compile_backend:
        model.compile_training(backend=compile_backend)
    _ = model.data_preprocessor.tokenizer  # built now, while its vocabulary file exists
    return model.to(device).train()


class Trainer:
    """One training step as mmengine's loop with (Mixed)Precision optim wrapper and the EMA hook run it."""

    def __init__(self, model, device: torch.device, precision: str):
        self.model, self.device = model, device
        self.dtype = AMP_DTYPES.get(precision)
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    def step(self, inputs: dict) -> Dict[str, torch.Tensor]:
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32,
                            enabled=self.dtype is not None):
            losses = self.model(inputs, data_samples=None, mode='loss')
        total = sum(value for key, value in losses.items() if key.startswith('loss'))
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if getattr(self.model.objective, 'teacher', None) is not None:
            self.model.objective.momentum_update(self.model)
        return losses


class OfficialTrainer(Trainer):
    """:class:`Trainer` whose loss is the official step's (``official_step.official_loss``)."""

    def step(self, inputs: dict) -> Dict[str, torch.Tensor]:
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32,
                            enabled=self.dtype is not None):
            loss_gcpr, loss_fgr = official_loss(self.model, inputs['images'], inputs['input_ids'],
                                                inputs['attention_mask'], inputs['image_ids'])
        self.scaler.scale(loss_gcpr + loss_fgr).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return dict(loss_gcpr=loss_gcpr, loss_fgr=loss_fgr)


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def measure(cfg, method: str, args, count: bool = True) -> dict:
    """Warm-up, timed steps, memory and (``count``) FLOPs of one method (runs in the child)."""
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    model = build_method(cfg, method, device, args.seed, args.compile if method != 'official' else None)
    trainer = (OfficialTrainer if method == 'official' else Trainer)(model, device, args.amp)
    generator = torch.Generator().manual_seed(args.seed)
    if args.fill_queue:
        fill_queue(model, args.batch_size, generator)
    batches = [synthetic_inputs(model, args.batch_size, step, generator, device)
               for step in range(args.warmup + args.iters + 1)]
    for inputs in batches[:args.warmup]:
        trainer.step(inputs)
    synchronize(device)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    reset_peak_rss()
    rss_before = rss_mib()
    seconds, cpu_seconds, losses = [], [], {}
    for inputs in batches[args.warmup:args.warmup + args.iters]:
        start, cpu_start = time.perf_counter(), time.process_time()
        out = trainer.step(inputs)
        synchronize(device)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
        losses = {k: float(v.detach()) for k, v in out.items() if k.startswith('loss')}
    if device.type == 'cuda':
        memory = dict(peak_mib=torch.cuda.max_memory_allocated(device) / MIB,
                      step_peak_mib=None, memory_kind='cuda max allocated')
    else:
        peak = vm_hwm_mib()
        memory = dict(peak_mib=peak, step_peak_mib=peak - rss_before, memory_kind='cpu VmHWM')
    flops = count_flops(lambda: trainer.step(batches[-1])) if count else None
    return dict(seconds=seconds, cpu_seconds=cpu_seconds, losses=losses, flops_per_step=flops,
                params=count_params(model), model=type(model).__name__,
                objective=type(model.objective).__name__, **memory)


def _child(cfg, method: str, args, count: bool, conn) -> None:
    try:
        conn.send(dict(ok=True, result=measure(cfg, method, args, count)))
    except BaseException:  # report, the parent raises
        conn.send(dict(ok=False, error=traceback.format_exc()))
    finally:
        conn.close()


def run_in_child(cfg, method: str, args, count: bool = True) -> dict:
    """:func:`measure` in a forked process (its own peak memory, nothing left behind)."""
    ctx = multiprocessing.get_context('fork')
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(cfg, method, args, count, send))
    proc.start()
    send.close()
    try:
        message = receive.recv()
    except EOFError:
        message = dict(ok=False, error=f'the child process died (exit code {proc.join() or proc.exitcode}; '
                       'out of memory?)')
    proc.join()
    if not message['ok']:
        raise RuntimeError(f'train benchmark, method {method!r} failed:\n{message["error"]}')
    return message['result']


# ----------------------------------------------------------------- report
def method_line(method: str, results: List[dict], args) -> dict:
    """The JSON line of one method: median step time over every round, memory, FLOPs, utilisation."""
    seconds = [s for r in results for s in r['seconds']]
    cpu_seconds = [s for r in results for s in r['cpu_seconds']]
    median = statistics.median(seconds)
    flops = results[0]['flops_per_step']
    device = torch.device(args.device)
    line = dict(benchmark='train', method=method, config=args.config, model=results[0]['model'],
                objective=results[0]['objective'],
                device=args.device, precision=args.amp, threads=args.threads,
                compile=args.compile if method != 'official' else None, batch_size=args.batch_size,
                fill_queue=args.fill_queue,
                samples_per_s=args.batch_size / median, s_per_step_median=median,
                s_per_step=[round(s, 4) for s in seconds], rounds=len(results),
                samples_per_cpu_s=args.batch_size / statistics.median(cpu_seconds),
                cpu_s_per_step=[round(s, 4) for s in cpu_seconds],
                cpu_s=summarize(cpu_seconds), wall_s=summarize(seconds),
                peak_mib=max(r['peak_mib'] for r in results),
                step_peak_mib=(max(r['step_peak_mib'] for r in results)
                               if results[0]['step_peak_mib'] is not None else None),
                memory_kind=results[0]['memory_kind'],
                flops_per_sample=flops / args.batch_size, losses=results[-1]['losses'],
                params_m=results[0]['params']['total'] / 1e6)
    line.update(utilisation(flops, median, peak_tflops(device, args.amp, args.peak_tflops)))
    return line


def ratio_line(ours: dict, official: dict) -> dict:
    """``ours`` / official of every figure (samples/s: > 1 is faster; memory, FLOPs: < 1 is less)."""
    def ratio(key):
        return ours[key] / official[key] if ours.get(key) and official.get(key) else None
    return dict(benchmark='train', method='ratio', of=f'{ours["method"]} / official',
                samples_per_s=ratio('samples_per_s'), samples_per_cpu_s=ratio('samples_per_cpu_s'),
                peak_mib=ratio('peak_mib'),
                step_peak_mib=ratio('step_peak_mib'), flops_per_sample=ratio('flops_per_sample'))


def run(args: argparse.Namespace) -> int:
    """Run ``train``: the methods interleaved over the rounds."""
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: CUDA is not available')
    if args.amp == 'fp16' and args.device == 'cpu':
        print('note: fp16 autocast on the CPU is slow; bf16 is the CPU half precision', flush=True)
    cfg = load_config(args.config, args.cfg_options)
    if cfg.model.get('type') != 'R2D2Model':
        raise SystemExit(f'train compares R2D2 training steps; {args.config} builds {cfg.model.get("type")}')
    lines = []
    with tempfile.TemporaryDirectory(prefix='r2d2_benchmark_') as tmp_dir:
        replaced = use_local_tokenizer(cfg, tmp_dir)
        if replaced:
            print(f'tokenizer: {replaced}', flush=True)
        results: Dict[str, List[dict]] = {method: [] for method in args.methods}
        for round_index in range(args.rounds):
            for method in args.methods:
                result = run_in_child(cfg, method, args, count=round_index == 0)  # FLOPs: once
                results[method].append(result)
                print(f'round {round_index + 1}/{args.rounds} {method}: '
                      f'{", ".join(f"{s:.2f}" for s in result["seconds"])} s/step '
                      f'({", ".join(f"{s:.2f}" for s in result["cpu_seconds"])} CPU s), '
                      f'peak {result["peak_mib"]:.0f} MiB', flush=True)
    for method in args.methods:
        lines.append(method_line(method, results[method], args))
    if 'official' in args.methods:
        official = lines[args.methods.index('official')]
        lines += [ratio_line(line, official) for line in lines[:len(args.methods)] if line is not official]
    report_lines(lines, args.json, tokenizer_replaced=replaced)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``train`` options."""
    parser.add_argument('--config', required=True, help='an R2D2 config (configs/r2d2/vitb_2.3m.py)')
    parser.add_argument('--batch-size', type=positive_int, default=8, help='pairs per step (default 8)')
    parser.add_argument('--iters', type=positive_int, default=3, help='timed steps per round (default 3)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed steps first (default 1)')
    parser.add_argument('--rounds', type=positive_int, default=2,
                        help='alternate the methods this many times (default 2)')
    parser.add_argument('--methods', nargs='+', choices=METHODS, default=list(METHODS[:2]),
                        help='default: ours-gcpr-fgr official (equal objective)')
    parser.add_argument('--amp', choices=['fp32', *AMP_DTYPES], default='fp32',
                        help='precision of every method (autocast; fp16 with loss scaling)')
    parser.add_argument('--compile', nargs='?', const='inductor', default=None, metavar='BACKEND',
                        help='torch.compile our training step (default backend inductor); the '
                        'warm-up steps then include compilation')
    parser.add_argument('--fill-queue', action='store_true',
                        help='start from a full feature queue (steady state, where every '
                        'method with a queue reads every slot) instead of an empty one (ours)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--threads', type=positive_int, default=1, help='torch CPU threads (default 1)')
    parser.add_argument('--peak-tflops', type=float, default=None,
                        help='peak TFLOP/s of the device for MFU (known GPUs: looked up)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', metavar='OUT', help='also write every line to this JSON file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config keys, e.g. model.queue.size=1024')
