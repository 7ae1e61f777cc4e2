"""``train-step``: speed, memory and leak check of pre-training steps at real size (synthetic inputs).

    python tools/benchmark.py train-step CONFIG [--batch-size 2] [--iters 4] [--warmup 1]
        [--device cpu|cuda] [--max-growth-mib 64] [--fill-queue] [--threads 1] [--seed 0] [--json OUT]
        [--cfg-options key=value ...]

``train-step`` builds the config's model and runs ``--warmup`` + ``--iters`` pre-training
steps as the training loop does (``model(inputs, mode='loss')``, the sum of the ``loss_*``
entries, backward, AdamW step at lr 1e-5, ``objective.momentum_update(model)`` when the model has a
momentum teacher, as ``MomentumUpdateHook`` does). Per step it prints the wall and CPU
time, the losses and the memory: on CPU the process RSS after the step, after
``gc.collect()`` and after glibc's ``malloc_trim(0)``; on CUDA ``torch.cuda`` allocated
memory (after ``gc.collect()``) and the step's peak. At the end it prints a summary and
exits with status 1 when the memory after the last step exceeds the memory after the
first measured step by more than ``--max-growth-mib`` (a leak: autograd graphs kept alive,
a growing buffer), or when a loss is not finite. ``--json OUT`` writes the numbers.

On CPU the check reads the RSS after ``malloc_trim`` (after ``gc.collect()`` without
glibc): at real size glibc keeps ~1.5 GiB of the freed activations of a step in its heap,
so the untrimmed RSS moves by up to ~100 MiB from step to step with no tensor leaked.
Trimming makes the next step fault those pages in again, a small cost in s/iter.

What it skips, so that it runs offline and in seconds of setup:

* ``init_weights`` (it would download CLIP's weights): the weights stay random, which
  costs the same time and memory. The momentum teacher is a copy of the random students.
* the data pipeline and the data preprocessor: the model gets already preprocessed
  inputs, ``dict(images=randn(B, 3, H, H), input_ids, attention_mask, image_ids,
  text_ids)`` with ``H = data_preprocessor.image_size`` and texts of
  ``data_preprocessor.max_length`` tokens: [CLS], ids of ordinary tokens, [SEP], then
  padding for the shorter texts. Image and text ids are unique over the run, as in an epoch.
* a full feature queue: it starts empty (as training does) and gains one batch per step;
  ``--fill-queue`` starts from the steady state instead (random features), where every
  step reads the whole queue (65,536 x 768 image and text features in the R2D2 configs).
* the Hub tokenizer. The model still needs a tokenizer (masking for MLM and FgD reads
  its ``mask_token_id`` and ``all_special_ids``), so a tokenizer given by a Hub id (the
  R2D2 configs use ``hfl/chinese-roberta-wwm-ext``) is replaced by one built from a
  vocabulary file written to a temporary folder, with the text encoder's vocabulary size
  and chinese-roberta-wwm-ext's layout: [PAD] 0, [unused1-99] 1-99, [UNK] 100, [CLS] 101,
  [SEP] 102, [MASK] 103, unused slots up to 998, ordinary tokens from 999 on. A local
  tokenizer (``vocab_file``, or ``name_or_path`` naming an existing folder, as the demo
  configs) is kept; the demo's toy vocabulary comes from ``python tools/demo.py`` or
  ``--cfg-options model.data_preprocessor.tokenizer.vocab_file=...``.
"""

import argparse
import gc
import json
import math
import os
import os.path as osp
import sys
import tempfile
import time
from typing import Dict, List

import torch
from mmengine.config import DictAction

from r2d2lib.engine import load_config

from .common import (
    build_model,
    count_params,
    fill_queue,
    malloc_trim,
    memory,
    peak_rss_mib,
    positive_int,
    synthetic_inputs,
    use_local_tokenizer,
)
from .losses import summarize


# ----------------------------------------------------------------- train-step
def train_step(model, optimizer, inputs: dict) -> Dict[str, float]:
    """One pre-training step as mmengine's loop and MomentumUpdateHook run it; the loss values."""
    losses = model(inputs, data_samples=None, mode='loss')
    values = {key: value for key, value in losses.items() if key.startswith('loss')}
    total = sum(values.values())
    total.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if getattr(model.objective, 'teacher', None) is not None:
        model.objective.momentum_update(model)
    result = {key: float(value.detach()) for key, value in values.items()}
    result['loss'] = float(total.detach())
    return result


def format_iteration(record: dict, total: int, warmup: bool) -> str:
    losses = ' '.join(f'{k[len("loss_"):]} {v:.4f}' for k, v in record['losses'].items() if k != 'loss')
    if 'rss_mib' in record['after_step']:
        mem = (f'RSS {record["after_step"]["rss_mib"]:.1f} MiB, after gc '
               f'{record["after_gc"]["rss_mib"]:.1f} MiB')
        if 'after_trim' in record:
            mem += f', after trim {record["after_trim"]["rss_mib"]:.1f} MiB'
    else:
        mem = (f'allocated {record["after_gc"]["allocated_mib"]:.1f} MiB, peak '
               f'{record["after_step"]["max_allocated_mib"]:.1f} MiB')
    tag = ' (warmup)' if warmup else ''
    return (f'iter {record["iter"]}/{total}{tag}: {record["seconds"]:.2f} s '
            f'({record["cpu_seconds"]:.1f} s CPU)  loss {record["losses"]["loss"]:.4f} ({losses})  {mem}')


def format_summary(result: dict) -> str:
    params, summary, iters = result['params'], result['summary'], result['iterations']
    loss_keys = list(iters[0]['losses'])
    mem_key = summary['memory_key']
    rows = [
        f'config        {result["config"]}',
        f'device        {result["device"]}, batch size {result["batch_size"]}, '
        f'{len(iters)} measured iterations after {result["warmup"]} warmup',
        f'params        total {params["total"] / 1e6:.1f} M, trainable {params["trainable"] / 1e6:.1f} M, '
        f'teacher {params["teacher"] / 1e6:.1f} M',
        f's/iter        {summary["s_per_iter"]:.2f} (min {summary["s_min"]:.2f}, '
        f'max {summary["s_max"]:.2f}); CPU s/iter {summary["cpu_s_per_iter"]:.2f} '
        f'(median {summary["cpu_s"]["median"]:.2f}, min {summary["cpu_s"]["min"]:.2f}, '
        f'max {summary["cpu_s"]["max"]:.2f}) '
        f'({result["torch_threads"]} threads)',
        f'memory        {mem_key} {summary["memory_moment"]}: first {summary["memory_first_mib"]:.1f} MiB, '
        f'last {summary["memory_last_mib"]:.1f} MiB, growth {summary["growth_mib"]:+.1f} MiB '
        f'(limit {summary["max_growth_mib"]:.0f} MiB)',
    ]
    if 'peak_rss_mib' in summary:
        rows.append(f'peak RSS      {summary["peak_rss_mib"]:.1f} MiB')
    if 'peak_allocated_mib' in summary:
        rows.append(f'peak alloc.   {summary["peak_allocated_mib"]:.1f} MiB')
    moments = [m for m in ('after_step', 'after_gc', 'after_trim') if m in iters[0]]
    unit = 'alloc.' if mem_key == 'allocated_mib' else 'RSS'
    header = (f'{"iter":>6}{"s":>8}' + ''.join(f'{k:>12}' for k in loss_keys)
              + ''.join(f'{unit + " " + m.replace("_", " "):>18}' for m in moments))
    rows += ['', header + '  (MiB)', '-' * len(header)]
    for record in iters:
        rows.append(f'{record["iter"]:>6}{record["seconds"]:>8.2f}'
                    + ''.join(f'{record["losses"][k]:>12.4f}' for k in loss_keys)
                    + ''.join(f'{record[m][mem_key]:>18.1f}' for m in moments))
    return '\n'.join(rows)


def run_train_step(args: argparse.Namespace) -> int:
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: CUDA is not available')
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = load_config(args.config, args.cfg_options)
    with tempfile.TemporaryDirectory(prefix='r2d2_benchmark_') as tmp_dir:
        replaced = use_local_tokenizer(cfg, tmp_dir)
        if replaced:
            print(f'tokenizer: {replaced}')
        model = build_model(cfg, device)
    params = count_params(model)
    print(f'model: {type(model).__name__}, {params["total"] / 1e6:.1f} M parameters '
          f'({params["trainable"] / 1e6:.1f} M trainable, {params["teacher"] / 1e6:.1f} M in the teacher)')
    generator = torch.Generator().manual_seed(args.seed)
    if args.fill_queue:
        print(f'queue: {fill_queue(model, args.batch_size, generator)} slots filled')
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    total = args.warmup + args.iters
    warmup_records: List[dict] = []
    records: List[dict] = []
    for step in range(total):
        inputs = synthetic_inputs(model, args.batch_size, step, generator, device)
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        losses = train_step(model, optimizer, inputs)
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        after_step = memory(device)
        del inputs
        gc.collect()
        record = dict(iter=step + 1, seconds=seconds, cpu_seconds=cpu_seconds, losses=losses,
                      after_step=after_step, after_gc=memory(device))
        if device.type == 'cpu' and malloc_trim():
            record['after_trim'] = memory(device)
        warmup = step < args.warmup
        (warmup_records if warmup else records).append(record)
        print(format_iteration(record, total, warmup), flush=True)

    mem_key = 'allocated_mib' if device.type == 'cuda' else 'rss_mib'
    moment = 'after_trim' if 'after_trim' in records[0] else 'after_gc'
    seconds = [r['seconds'] for r in records]
    first, last = records[0][moment][mem_key], records[-1][moment][mem_key]
    summary = dict(s_per_iter=sum(seconds) / len(seconds), s_min=min(seconds), s_max=max(seconds),
                   cpu_s_per_iter=sum(r['cpu_seconds'] for r in records) / len(records),
                   cpu_s=summarize([r['cpu_seconds'] for r in records]), wall_s=summarize(seconds),
                   memory_key=mem_key, memory_moment=moment, memory_first_mib=first, memory_last_mib=last,
                   growth_mib=last - first, max_growth_mib=args.max_growth_mib)
    if device.type == 'cuda':
        summary['peak_allocated_mib'] = max(r['after_step']['max_allocated_mib'] for r in records)
    else:
        summary['peak_rss_mib'] = peak_rss_mib()
    bad_losses = sorted({k for r in warmup_records + records for k, v in r['losses'].items()
                         if not math.isfinite(v)})
    summary['ok'] = summary['growth_mib'] <= args.max_growth_mib and not bad_losses
    result = dict(command='train-step', config=args.config, model=type(model).__name__,
                  device=str(device), torch_threads=torch.get_num_threads(), batch_size=args.batch_size,
                  warmup=args.warmup, iters=args.iters, fill_queue=args.fill_queue,
                  tokenizer_replaced=replaced, params=params,
                  warmup_iterations=warmup_records, iterations=records, summary=summary)
    print('\n' + format_summary(result))
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
        print(f'\nresults: {args.json}')
    failed = False
    if summary['growth_mib'] > args.max_growth_mib:
        print(f'\nFAILED: memory grew by {summary["growth_mib"]:.1f} MiB ({mem_key} {moment}, iteration '
              f'{records[0]["iter"]} -> {records[-1]["iter"]}), more than --max-growth-mib '
              f'{args.max_growth_mib:g}', file=sys.stderr)
        failed = True
    if bad_losses:
        print(f'\nFAILED: non-finite losses: {", ".join(bad_losses)}', file=sys.stderr)
        failed = True
    return 1 if failed else 0



# ----------------------------------------------------------------- command line
def add_arguments(train: argparse.ArgumentParser) -> None:
    """The ``train-step`` options."""
    train.description = 'Run pre-training steps on synthetic inputs; fail if memory grows across iterations.'
    train.add_argument('config', help='config file path')
    train.add_argument('--batch-size', type=positive_int, default=2, help='pairs per step (default 2)')
    train.add_argument('--iters', type=positive_int, default=4, help='measured steps (default 4)')
    train.add_argument('--warmup', type=int, default=1,
                       help='steps before measuring: first-step allocations, optimizer state (default 1)')
    train.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    train.add_argument('--max-growth-mib', type=float, default=64.0,
                       help='fail when memory after the last step exceeds memory after the first '
                       'measured step by more than this (default 64)')
    train.add_argument('--fill-queue', action='store_true',
                       help='start with a full feature queue (steady state; it fills in '
                       'queue.size / batch size steps of training) instead of an empty one')
    train.add_argument('--threads', type=positive_int, default=1, help='torch threads (default 1)')
    train.add_argument('--seed', type=int, default=0, help='seed of the weights and inputs')
    train.add_argument('--json', metavar='OUT', help='write the measurements to this JSON file')
    train.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                       help='override config keys, e.g. model.queue.size=1024')


def run(args: argparse.Namespace) -> int:
    """Run ``train-step``; the exit status."""
    if args.warmup < 0:
        raise SystemExit('--warmup must be >= 0')
    return run_train_step(args)
