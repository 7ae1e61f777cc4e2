"""Benchmarks at real size on synthetic inputs: no data set, no download, random weights.

    python tools/benchmark.py train-step CONFIG [--batch-size 2] [--iters 4] [--warmup 1]
        [--device cpu|cuda] [--max-growth-mib 64] [--fill-queue] [--seed 0] [--json OUT]
        [--cfg-options key=value ...]

``train-step`` builds the config's model and runs ``--warmup`` + ``--iters`` pre-training
steps as the training loop does (``model(inputs, mode='loss')``, the sum of the ``loss_*``
entries, backward, AdamW step at lr 1e-5, ``momentum_update()`` when the model has a
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
import ctypes
import ctypes.util
import gc
import json
import math
import os
import os.path as osp
import resource
import sys
import tempfile
import time
from typing import Dict, List, Optional

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

import r2d2lib  # noqa: F401  (registers the components)
from r2d2lib.engine import load_config
from r2d2lib.registry import MODELS

MIB = 2 ** 20
# chinese-roberta-wwm-ext's special tokens: [PAD] 0, [unused1-99], [UNK] 100, [CLS] 101, [SEP] 102,
# [MASK] 103; its ordinary tokens start after further reserved slots, at 999 here.
BERT_SPECIAL_IDS = {'[PAD]': 0, '[UNK]': 100, '[CLS]': 101, '[SEP]': 102, '[MASK]': 103}
FIRST_ORDINARY_ID = 999


# ----------------------------------------------------------------- tokenizer and inputs
def write_bert_vocab(path: str, vocab_size: int) -> None:
    """A WordPiece vocabulary of ``vocab_size`` tokens with chinese-roberta-wwm-ext's special ids."""
    if vocab_size <= FIRST_ORDINARY_ID:
        raise ValueError(f'vocab_size must exceed {FIRST_ORDINARY_ID}, got {vocab_size}')
    tokens = [f'[unused{i}]' for i in range(FIRST_ORDINARY_ID)]
    for token, index in BERT_SPECIAL_IDS.items():
        tokens[index] = token
    cjk = 0x9FFF - 0x4E00 + 1  # one CJK character per token while they last
    tokens += [chr(0x4E00 + i) if i < cjk else f'##x{i}' for i in range(vocab_size - FIRST_ORDINARY_ID)]
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(tokens) + '\n')


def use_local_tokenizer(cfg: Config, tmp_dir: str) -> Optional[str]:
    """Replace a Hub tokenizer in ``cfg.model`` by a local vocabulary file; returns what was replaced.

    A ``vocab_file`` tokenizer, or a ``name_or_path`` naming an existing folder, is kept (None).
    """
    preprocessor = cfg.model.setdefault('data_preprocessor', dict(type='ImageTextDataPreprocessor'))
    tokenizer = dict(preprocessor.get('tokenizer') or dict(name_or_path='hfl/chinese-roberta-wwm-ext'))
    if 'vocab_file' in tokenizer:
        if not osp.isfile(str(tokenizer['vocab_file'])):
            raise FileNotFoundError(
                f'the config\'s tokenizer vocab_file {tokenizer["vocab_file"]!r} does not exist (the '
                'demo configs need the toy corpus: run tools/demo.py, or pass --cfg-options '
                'model.data_preprocessor.tokenizer.vocab_file=PATH)')
        return None
    name = str(tokenizer.get('name_or_path'))
    if osp.isdir(name):
        return None
    vocab_size = cfg.model.get('text_encoder', {}).get('config', {}).get('vocab_size', 21128)
    vocab_file = osp.join(tmp_dir, 'vocab.txt')
    write_bert_vocab(vocab_file, vocab_size)
    preprocessor['tokenizer'] = dict(vocab_file=vocab_file)
    return f'{name} -> synthetic {vocab_size}-token vocabulary ({vocab_file})'


def first_ordinary_id(tokenizer, vocab_size: int) -> int:
    """The first id after the special tokens that is not an ``[unused]`` slot."""
    start = max(tokenizer.all_special_ids) + 1
    tokens = tokenizer.convert_ids_to_tokens(list(range(start, vocab_size)))
    for index, token in enumerate(tokens, start):
        if not token.startswith('[unused'):
            return index
    raise ValueError(f'the tokenizer has no ordinary token below id {vocab_size}')


def synthetic_inputs(model, batch_size: int, step: int, generator: torch.Generator,
                     device: torch.device) -> dict:
    """Preprocessed inputs of one batch: random pixels, random texts with padding, unique ids."""
    preprocessor = model.data_preprocessor
    tokenizer = preprocessor.tokenizer
    size, length = preprocessor.image_size, preprocessor.max_length
    vocab = min(len(tokenizer), model.text_encoder.vocab_size)
    low = first_ordinary_id(tokenizer, vocab)
    shortest = max(3, length // 2)
    lengths = torch.randint(shortest, length + 1, (batch_size,), generator=generator)
    lengths[-1] = shortest  # at least one padded text
    input_ids = torch.full((batch_size, length), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros(batch_size, length, dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        input_ids[i, 0], input_ids[i, n - 1] = tokenizer.cls_token_id, tokenizer.sep_token_id
        input_ids[i, 1:n - 1] = torch.randint(low, vocab, (n - 2,), generator=generator)
        attention_mask[i, :n] = 1
    ids = torch.arange(batch_size) + step * batch_size
    inputs = dict(images=torch.randn(batch_size, 3, size, size, generator=generator),
                  input_ids=input_ids, attention_mask=attention_mask, image_ids=ids, text_ids=ids.clone())
    return {key: value.to(device) for key, value in inputs.items()}


@torch.no_grad()
def fill_queue(model, batch_size: int, generator: torch.Generator) -> int:
    """Fill the feature queue as after a full cycle of training (its steady state); the slots filled.

    Random unit features, image ids no batch uses, weights decayed per batch of age.
    """
    queue = getattr(model, 'queue', None)
    if queue is None:
        return 0
    size, dim = queue.image_feats.shape
    for feats in (queue.image_feats, queue.text_feats):
        feats.copy_(torch.nn.functional.normalize(torch.randn(size, dim, generator=generator), dim=-1))
    queue.image_ids.copy_((1 << 40) + torch.arange(size))
    age = (size - 1 - torch.arange(size)) // batch_size  # slot size-1 written last, the pointer at 0
    queue.weights.copy_(torch.full((size,), float(queue.decay)) ** age)
    queue.ptr.zero_()
    return size


# ----------------------------------------------------------------- measurements
def rss_mib() -> float:
    """Resident set size of this process now (Linux /proc), else the peak so far."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / MIB
    except (OSError, ValueError):
        return peak_rss_mib()


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == 'darwin' else peak / 1024


def malloc_trim() -> bool:
    """Hand the C heap's free pages back to the system (glibc); whether that was possible."""
    try:
        ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):  # no glibc (musl, macOS)
        return False
    return True


def memory(device: torch.device) -> Dict[str, float]:
    """The memory numbers of one moment: RSS on CPU, allocated / peak allocated on CUDA (MiB)."""
    if device.type == 'cuda':
        return dict(allocated_mib=torch.cuda.memory_allocated(device) / MIB,
                    max_allocated_mib=torch.cuda.max_memory_allocated(device) / MIB)
    return dict(rss_mib=rss_mib(), peak_rss_mib=peak_rss_mib())


def count_params(model) -> Dict[str, int]:
    teacher = getattr(model, 'teacher', None)
    return dict(total=sum(p.numel() for p in model.parameters()),
                trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
                teacher=sum(p.numel() for p in teacher.parameters()) if teacher is not None else 0)


# ----------------------------------------------------------------- train-step
def build_model(cfg: Config, device: torch.device):
    """The config's model, random weights (no ``init_weights``), tokenizer built, in train mode."""
    init_default_scope('r2d2lib')
    model = MODELS.build(cfg.model).to(device)
    _ = model.data_preprocessor.tokenizer  # built now, while its vocabulary file exists
    return model.train()


def train_step(model, optimizer, inputs: dict) -> Dict[str, float]:
    """One pre-training step as mmengine's loop and MomentumUpdateHook run it; the loss values."""
    losses = model(inputs, data_samples=None, mode='loss')
    values = {key: value for key, value in losses.items() if key.startswith('loss')}
    total = sum(values.values())
    total.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if getattr(model, 'teacher', None) is not None:
        model.momentum_update()
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
def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f'must be >= 1, got {value}')
    return number


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    train = commands.add_parser('train-step', help='speed and memory of pre-training steps',
                                description='Run pre-training steps on synthetic inputs; fail if '
                                'memory grows across iterations.')
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
    train.add_argument('--seed', type=int, default=0, help='seed of the weights and inputs')
    train.add_argument('--json', metavar='OUT', help='write the measurements to this JSON file')
    train.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                       help='override config keys, e.g. model.queue.size=1024')
    train.set_defaults(func=run_train_step)

    args = parser.parse_args(argv)
    if args.command == 'train-step' and args.warmup < 0:
        parser.error('--warmup must be >= 0')
    return args


def main() -> None:
    args = parse_args()
    sys.exit(args.func(args))


if __name__ == '__main__':
    main()
