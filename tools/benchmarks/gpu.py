"""``gpu``: the GPU measurements of R2D2 ViT-B and ViT-L at real size, in one command (issue 21).

    python tools/benchmark.py gpu --out work_dirs/gpu/gpu.jsonl [--profile] [--peak-tflops T]
        [--models vitl vitb] [--variants bf16 bf16+compile ...] [--parts train embed retrieval]
        [--budget-s 480] [--part-limit-s 90] [--max-batch 512] [--iters 5] [--warmup 2]
        [--embed-batch 256] [--images 100000] [--texts 500000] [--topk 16] [--rerank-queries 2048]
    python tools/benchmark.py gpu --tiny --out /tmp/gpu.jsonl     # every part at tiny size, CPU too

What it measures, on synthetic inputs with random weights (``common.synthetic_inputs``; the
configs' Hub tokenizer replaced by a local vocabulary of the same size), per model
(``configs/r2d2/vitl_23m.py``, ``configs/r2d2/vitb_23m.py``: the full objective of Eq. 8, the
feature queue filled as in its steady state):

* ``train``: pre-training steps (forward ``mode='loss'``, backward, AdamW, the teacher's EMA:
  ``training.Trainer``) for each variant of precision (fp32, bf16 autocast, bf16 autocast +
  ``torch.compile`` of the objective's step) with and without gradient checkpointing of every
  encoder, at the largest batch that fits (:func:`largest_batch`: ``--max-batch``, halved after
  each out-of-memory error; the compiled and fp32 variants start from the batch eager bf16 found
  with the same checkpointing, as each batch tried would compile again); samples/s (median of
  ``--iters`` timed steps after ``--warmup``), peak memory (CUDA: ``max_memory_allocated`` of the
  timed steps; CPU: ``VmHWM``), and
  ``MFU = flops_per_step / s_per_step / (peak_tflops * 1e12)`` (:func:`flops.utilisation`),
  where ``flops_per_step`` is the model's FLOPs per sample, counted by ``FlopCounterMode`` on
  one eager step at ``--flops-batch`` without checkpointing (model FLOPs: the recomputation of
  checkpointing is not counted), times the batch size, and ``peak_tflops`` is the device's
  dense bf16 peak (``flops.GPU_PEAK_TFLOPS`` by device name, or ``--peak-tflops``) for every
  variant, fp32 too. Scaling by the batch leaves out the batch-squared terms (the B x B
  similarities of GCPR and of the hard-negative draw, ~2 B^2 D FLOPs each): under 0.01% at
  B = 512, D = 768.
* ``embed``: ``encode_image`` (images/s) and ``encode_text`` (texts/s) at ``--embed-batch``, eval
  mode under ``torch.inference_mode``, fp32 and bf16 autocast, with their MFU.
* ``retrieval`` (first model only): ``--images`` x ``--texts`` unit embeddings
  (``evaluation.make_features``: text t belongs to image t % images), both directions ranked by
  ``chunked_topk`` (r2d2lib's evaluation code), then the top ``--topk`` of the first
  ``--rerank-queries`` image queries re-ranked by the model's two cross encoders and ITM heads
  (``rerank_topk`` with ``R2D2Model.match_features``, bf16) on random token features.
* ``profile`` (``--profile``, first model only): ``torch.profiler`` over the bf16 step at the
  batch ``train`` found; the table of the top kernels by self device time (CPU: self CPU time).

Time: the whole run has ``--budget-s`` (8 minutes); each part runs under its own limit, the
smaller of ``--part-limit-s`` and what is left of the budget. A timer signal (``SIGALRM``) ends a
part at its limit: the part is recorded with ``status: timeout`` and what it had measured so far,
and the run goes on with the next part; a part that cannot start is ``skipped``. The signal is
handled between Python instructions, so one long kernel call runs to its end first.

Output: every part is one JSON line, appended to ``--out`` as soon as it ends, and the Markdown
tables beside it (``--out`` with the suffix ``.md``) are rewritten after each part, so a run
that is killed keeps what it measured. On CPU, ``--tiny`` runs every part at tiny size (the same
configs, shrunk by ``TINY_OPTIONS``); the compiled variants are skipped there with the reason
recorded unless ``--compile-on-cpu`` (inductor's C++ build of a tiny step takes minutes on 2 cores).
"""
import argparse
import contextlib
import gc
import json
import os
import os.path as osp
import signal
import statistics
import tempfile
import time
from typing import Callable, Dict, List, Optional

import torch
from mmengine.config import DictAction

from r2d2lib.engine import load_config
from r2d2lib.evaluation.ranking import chunked_topk, rerank_topk

from .common import (
    MIB,
    build_model,
    fill_queue,
    positive_int,
    reset_peak_rss,
    synthetic_inputs,
    use_local_tokenizer,
    vm_hwm_mib,
)
from .evaluation import make_features, recall_at_1
from .flops import count_flops, peak_tflops, utilisation
from .gpu_report import write_markdown
from .training import Trainer, synchronize

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))  # the repository (configs/ in it)
CONFIGS = {'vitl': 'configs/r2d2/vitl_23m.py', 'vitb': 'configs/r2d2/vitb_23m.py'}
# name -> (precision, compile, gradient checkpointing), in the order they run: the goal first
VARIANTS = {
    'bf16': ('bf16', False, False), 'bf16+compile': ('bf16', True, False),
    'bf16+ckpt': ('bf16', False, True), 'fp32': ('fp32', False, False),
    'fp32+ckpt': ('fp32', False, True), 'bf16+compile+ckpt': ('bf16', True, True),
}
PARTS = ('train', 'embed', 'retrieval', 'profile')
# --tiny: the real configs shrunk (one layer, width 32 or 48, 32 px, 16 tokens, queue of 64)
TINY_OPTIONS = {
    'vitb': {'model.image_encoder.config': dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                num_attention_heads=2, image_size=32, patch_size=16),
             'model.text_image_encoder.kv_width': 32},
    'vitl': {'model.image_encoder.config': dict(hidden_size=48, intermediate_size=96, num_hidden_layers=1,
                                                num_attention_heads=2, image_size=28, patch_size=14),
             'model.text_image_encoder.kv_width': 48,
             'model.data_preprocessor.image_size': 28},
    'both': {'model.data_preprocessor.image_size': 32, 'model.data_preprocessor.max_length': 16,
             'model.text_encoder.config': dict(vocab_size=1100, hidden_size=32, num_hidden_layers=1,
                                               num_attention_heads=2, intermediate_size=64),
             'model.text_image_encoder.width': 32, 'model.text_image_encoder.num_layers': 1,
             'model.text_image_encoder.num_heads': 2,
             'model.image_text_encoder.width': 32, 'model.image_text_encoder.kv_width': 32,
             'model.image_text_encoder.num_layers': 1, 'model.image_text_encoder.num_heads': 2,
             'model.embed_dim': 32, 'model.objective.queue.size': 64},
}
# the real-size defaults, and those of --tiny
SIZES = dict(max_batch=(512, 4), flops_batch=(16, 2), embed_batch=(256, 8), iters=(5, 2), warmup=(2, 1),
             images=(100_000, 256), texts=(500_000, 1024), rerank_queries=(2048, 8),
             rerank_batch=(4096, 32), chunk_size=(1024, 64), budget_s=(480.0, 240.0),
             part_limit_s=(90.0, 60.0))


# ----------------------------------------------------------------- time limits
class PartTimeout(BaseException):
    """A part ran past its time limit (a BaseException, as KeyboardInterrupt: the ``except Exception``
    of the code it interrupts, a fallback in a library, must not swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`PartTimeout` in this (the main) thread once ``seconds`` have passed."""
    if seconds <= 0:
        raise PartTimeout('no time left')

    def expire(signum, frame):
        raise PartTimeout(f'over its limit of {seconds:.1f} s')

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def free_memory(device: torch.device) -> None:
    """Collect cycles and hand the CUDA cache back (a no-op on the CPU: tiny sizes only, and a full
    collection of a process holding torch and transformers costs ~0.3 s a part)."""
    if device.type == 'cuda':
        gc.collect()
        torch.cuda.empty_cache()


class Runner:
    """Runs the parts under the budget and records each as one line (JSON lines + Markdown)."""

    def __init__(self, out: str, budget_s: float, part_limit_s: float, device: torch.device, header: dict):
        self.out, self.part_limit_s, self.device, self.header = out, part_limit_s, device, header
        self.deadline = time.perf_counter() + budget_s
        self.rows: List[dict] = []
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        with open(out, 'w') as f:
            f.write(json.dumps(dict(part='header', **header)) + '\n')

    def run(self, part: str, fn: Callable[[dict], None], **fields) -> dict:
        """``fn(state)`` under the part's limit; ``state`` (what it measured so far) goes in the line."""
        limit = min(self.part_limit_s, self.deadline - time.perf_counter())
        state: dict = {}
        start = time.perf_counter()
        if limit <= 0:
            status = dict(status='skipped', reason='the total budget (--budget-s) is spent')
        else:
            try:
                with time_limit(limit):
                    fn(state)
                status = dict(status='ok')
            except PartTimeout as err:
                status = dict(status='timeout', reason=str(err))
            except Exception as err:  # recorded; the run goes on with the next part
                status = dict(status='error', reason=f'{type(err).__name__}: {str(err)[:500]}')
        seconds = time.perf_counter() - start  # until the part ended or was stopped
        free_memory(self.device)
        status.update(state.pop('status', {}))
        row = dict(part=part, **fields, **state, **status, seconds=round(seconds, 3),
                   limit_s=round(max(limit, 0.0), 3))
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        with open(self.out, 'a') as f:
            f.write(json.dumps(row) + '\n')
        write_markdown(markdown_path(self.out), self.header, self.rows)
        return row


def markdown_path(out: str) -> str:
    return osp.splitext(out)[0] + '.md'


# ----------------------------------------------------------------- one model
def largest_batch(try_batch: Callable[[int], None], start: int, device: torch.device,
                  failed: Optional[List[int]] = None) -> int:
    """The first of ``start, start // 2, ..., 1`` at which ``try_batch(b)`` runs out of no memory.

    After each out-of-memory error the memory is freed and the batch halved; the batches that
    failed are appended to ``failed``. Raises the last error when even batch 1 fails.
    """
    batch = start
    while True:
        try:
            try_batch(batch)
            return batch
        except torch.OutOfMemoryError:
            if batch == 1:
                raise
        if failed is not None:
            failed.append(batch)
        free_memory(device)  # the error and its frames are gone: their tensors can go
        batch //= 2


def set_gradient_checkpointing(model: torch.nn.Module, enabled: bool) -> None:
    """Switch the recomputation of every encoder layer (transformers' towers, our cross encoders)."""
    for module in model.modules():
        if not getattr(module, 'supports_gradient_checkpointing', False):
            continue
        if hasattr(module, 'activation_checkpointing_enable'):  # transformers >= 5.x
            if enabled:
                module.activation_checkpointing_enable(activation_checkpointing_kwargs=dict(use_reentrant=False))
            else:
                module.activation_checkpointing_disable()
        elif enabled:
            module.gradient_checkpointing_enable(gradient_checkpointing_kwargs=dict(use_reentrant=False))
        else:
            module.gradient_checkpointing_disable()
    for module in model.modules():  # CrossEncoder reads its flag in forward
        if type(module).__name__ == 'CrossEncoder':
            module.gradient_checkpointing = enabled


class Bench:
    """One model at its size: built once, its FLOPs per sample counted once, shared by its parts."""

    def __init__(self, name: str, args, device: torch.device, tmp_dir: str):
        options = {**tiny_options(name, args.tiny), **args.cfg_options}
        cfg = load_config(osp.join(ROOT, CONFIGS[name]), options)
        self.tokenizer = use_local_tokenizer(cfg, tmp_dir)
        self.name, self.args, self.device = name, args, device
        torch.manual_seed(args.seed)
        with torch.device(device):  # initialise the weights where they live
            self.model = build_model(cfg, device)
        self.generator = torch.Generator().manual_seed(args.seed)
        self.step_index = 0
        fill_queue(self.model, args.flops_batch, self.generator)
        self.params_m = sum(p.numel() for p in self.model.parameters()) / 1e6
        trainer = Trainer(self.model, device, 'bf16')
        inputs = self.inputs(args.flops_batch)
        self.flops_per_sample = count_flops(lambda: trainer.step(inputs)) / args.flops_batch
        self.batches: Dict[str, int] = {}

    def inputs(self, batch_size: int) -> dict:
        self.step_index += 1
        return synthetic_inputs(self.model, batch_size, self.step_index, self.generator, self.device)

    def set_compiled(self, compiled: bool) -> None:
        objective = self.model.objective
        if compiled and '_compiled_step' not in objective.__dict__:
            self.model.compile_training(backend='inductor', dynamic=False)
        elif not compiled and objective.__dict__.pop('_compiled_step', None) is not None:
            torch._dynamo.reset()

    def train(self, variant: str, state: dict) -> None:
        """Warm-up and timed steps of one variant at the largest batch that fits."""
        precision, compiled, ckpt = VARIANTS[variant]
        args, device, model = self.args, self.device, self.model
        state.update(precision=precision, compile=compiled, checkpointing=ckpt)
        if compiled and device.type == 'cpu' and not args.compile_on_cpu:
            state['status'] = dict(status='skipped', reason='torch.compile on the CPU: inductor builds C++ '
                                   'for minutes on 2 cores (--compile-on-cpu runs it)')
            return
        self.set_compiled(compiled)
        set_gradient_checkpointing(model, ckpt)
        trainer = Trainer(model, device, precision)
        state['oom_batches'] = []

        def first_steps(batch: int) -> None:
            trainer.optimizer.zero_grad(set_to_none=True)
            for _ in range(max(args.warmup, 1)):
                trainer.step(self.inputs(batch))
            synchronize(device)

        # the compiled and fp32 variants start from the batch of eager bf16 with the same checkpointing:
        # a compiled step recompiles for each batch it tries, and fp32 activations take more memory
        start = self.batches.get('bf16+ckpt' if ckpt else 'bf16', args.max_batch) if variant not in (
            'bf16', 'bf16+ckpt') else args.max_batch
        batch = largest_batch(first_steps, start, device, state['oom_batches'])
        self.batches[variant] = batch
        state.update(batch_size=batch, search_start=start, batch_capped=batch == args.max_batch)
        batches = [self.inputs(batch) for _ in range(args.iters)]
        synchronize(device)
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        reset_peak_rss()
        seconds = []
        for inputs in batches:
            start = time.perf_counter()
            trainer.step(inputs)
            synchronize(device)
            seconds.append(time.perf_counter() - start)
            state['s_per_step_all'] = [round(s, 5) for s in seconds]
        median = statistics.median(seconds)
        flops = self.flops_per_sample * batch
        state.update(samples_per_s=batch / median, s_per_step=median, flops_per_step=flops,
                     peak_memory_mib=(torch.cuda.max_memory_allocated(device) / MIB if device.type == 'cuda'
                                      else vm_hwm_mib()),
                     **utilisation(flops, median, peak_tflops(device, 'bf16', args.peak_tflops)))

    def embed(self, state: dict) -> None:
        """encode_image / encode_text throughput at the embedding batch, fp32 and bf16."""
        args, device, model = self.args, self.device, self.model
        inputs = self.inputs(args.embed_batch)
        calls = {'image': lambda: model.encode_image(inputs['images']),
                 'text': lambda: model.encode_text(inputs['input_ids'], inputs['attention_mask'])}
        peak = peak_tflops(device, 'bf16', args.peak_tflops)
        state.update(batch_size=args.embed_batch, towers={})
        model.eval()
        try:
            for precision in ('bf16', 'fp32'):
                for tower, call in calls.items():
                    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                                enabled=precision == 'bf16'):
                        for _ in range(args.warmup):
                            call()
                        flops = count_flops(call)
                        synchronize(device)
                        seconds = []
                        for _ in range(args.iters):
                            start = time.perf_counter()
                            call()
                            synchronize(device)
                            seconds.append(time.perf_counter() - start)
                    median = statistics.median(seconds)
                    state['towers'][f'{tower}/{precision}'] = dict(
                        tower=tower, precision=precision, items_per_s=args.embed_batch / median,
                        s_per_batch=median, flops_per_item=flops / args.embed_batch,
                        **utilisation(flops, median, peak))
        finally:
            model.train()

    def retrieval(self, state: dict) -> None:
        """Both directions over ``images`` x ``texts`` embeddings, then top-k re-ranking of a subset."""
        args, device, model = self.args, self.device, self.model
        with torch.no_grad():
            dim = model.text_proj(torch.zeros(1, model.text_encoder.width, device=device)).shape[-1]
        feats = make_features(args.images, args.texts, dim, 1, 1, args.seed)
        images, texts = feats['image_embeds'].to(device), feats['text_embeds'].to(device)
        state.update(images=args.images, texts=args.texts, dim=dim, topk=args.topk,
                     chunk_size=args.chunk_size)
        ranked = {}
        for direction, queries, gallery in (('i2t', images, texts), ('t2i', texts, images)):
            synchronize(device)
            start = time.perf_counter()
            sims, indices = chunked_topk(queries, gallery, args.topk, args.chunk_size)
            synchronize(device)
            seconds = time.perf_counter() - start
            ranked[direction] = (sims, indices.cpu())
            state[direction] = dict(queries=len(queries), gallery=len(gallery), seconds=seconds,
                                    queries_per_s=len(queries) / seconds)
        state.update(recall_at_1(ranked['i2t'][1][:, 0], ranked['t2i'][1][:, 0], feats['owner']))
        state['rerank'] = self._rerank(*ranked['i2t'])

    def _rerank(self, sims: torch.Tensor, indices: torch.Tensor) -> dict:
        """The top-k pairs of the first queries scored by both cross encoders (random token features)."""
        args, device, model = self.args, self.device, self.model
        queries = min(args.rerank_queries, len(indices))
        pool = 256  # random tokens, indexed by image / text id modulo the pool
        size = model.data_preprocessor.image_size
        with torch.no_grad():
            patches = model.image_encoder(torch.zeros(1, 3, size, size, device=device)).shape[1]
        generator = torch.Generator().manual_seed(args.seed)
        image_tokens = torch.randn(pool, patches, model.image_encoder.width, generator=generator).to(device)
        length = model.data_preprocessor.max_length
        text_hidden = torch.randn(pool, length, model.text_encoder.width, generator=generator).to(device)
        text_mask = torch.ones(pool, length, dtype=torch.long, device=device)

        def pair_score(query_idx, cand_idx):
            image, text = query_idx.to(device) % pool, cand_idx.to(device) % pool
            return model.match_features(image_tokens[image], text_hidden[text], text_mask[text]).float().cpu()

        model.eval()
        try:
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
                synchronize(device)
                start = time.perf_counter()
                rerank_topk(indices[:queries, :args.topk], sims[:queries, :args.topk].cpu(), pair_score,
                            args.rerank_batch, progress=False)
                synchronize(device)
                seconds = time.perf_counter() - start
        finally:
            model.train()
        pairs = queries * min(args.topk, indices.shape[1])
        return dict(queries=queries, pairs=pairs, seconds=seconds, pairs_per_s=pairs / seconds)

    def profile(self, state: dict) -> None:
        """torch.profiler over bf16 steps at the batch ``train`` found: the top kernels."""
        args, device = self.args, self.device
        self.set_compiled(False)
        set_gradient_checkpointing(self.model, False)
        batch = self.batches.get('bf16') or args.flops_batch
        trainer = Trainer(self.model, device, 'bf16')
        batches = [self.inputs(batch) for _ in range(3)]
        trainer.step(batches[0])
        synchronize(device)
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == 'cuda':
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            for inputs in batches[1:]:
                trainer.step(inputs)
            synchronize(device)
        key = 'self_device_time_total' if device.type == 'cuda' else 'self_cpu_time_total'
        events = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)
        total = sum(getattr(e, key) for e in events) or 1
        state.update(batch_size=batch, steps=len(batches) - 1, time_kind=key, top=[
            dict(name=e.key[:120], self_ms=getattr(e, key) / 1000, share=getattr(e, key) / total,
                 calls=e.count) for e in events[:args.profile_rows]])


def tiny_options(name: str, tiny: bool) -> dict:
    return {**TINY_OPTIONS['both'], **TINY_OPTIONS[name]} if tiny else {}


# ----------------------------------------------------------------- the run
def run(args: argparse.Namespace) -> int:
    """Run the chosen parts of every model under the budget; exit status 0 (the lines say what failed)."""
    for key, (real, tiny) in SIZES.items():
        if getattr(args, key) is None:
            setattr(args, key, tiny if args.tiny else real)
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: CUDA is not available')
    if device.type == 'cpu' and not args.tiny:
        raise SystemExit('gpu: no CUDA device; real sizes need one (--tiny runs every part at tiny size '
                         'on the CPU)')
    torch.set_num_threads(args.threads or torch.get_num_threads())
    header = dict(device=torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu',
                  torch=torch.__version__, tiny=args.tiny, models=args.models, variants=args.variants,
                  bf16_peak_tflops=peak_tflops(device, 'bf16', args.peak_tflops),
                  peak_source='--peak-tflops' if args.peak_tflops else 'flops.GPU_PEAK_TFLOPS by device name',
                  budget_s=args.budget_s, part_limit_s=args.part_limit_s, threads=torch.get_num_threads(),
                  matmul_precision=torch.get_float32_matmul_precision())
    runner = Runner(args.out, args.budget_s, args.part_limit_s, device, header)
    with tempfile.TemporaryDirectory(prefix='r2d2_gpu_benchmark_') as tmp_dir:
        for index, name in enumerate(args.models):
            run_model(runner, name, first=index == 0, args=args, device=device, tmp_dir=tmp_dir)
            free_memory(device)  # the model went with run_model's frame
    print(f'results: {args.out} and {markdown_path(args.out)}', flush=True)
    return 0


def run_model(runner: Runner, name: str, first: bool, args, device: torch.device, tmp_dir: str) -> None:
    """The parts of one model: build, the step variants, embedding; retrieval and profile on the first."""
    built: Dict[str, Bench] = {}

    def build(state: dict) -> None:
        bench = built[name] = Bench(name, args, device, tmp_dir)
        state.update(config=CONFIGS[name], params_m=bench.params_m, flops_per_sample=bench.flops_per_sample,
                     tokenizer=bench.tokenizer)

    runner.run('build', build, model=name)
    bench = built.pop(name, None)
    wanted = [('train', v) for v in args.variants if 'train' in args.parts]
    wanted += [(part, None) for part in ('embed', 'retrieval', 'profile')
               if part in args.parts and (part == 'embed' or first) and (part != 'profile' or args.profile)]
    for part, variant in wanted:
        fields = dict(model=name, **({'variant': variant} if variant else {}))
        if bench is None:
            runner.run(part, lambda state: state.update(status=dict(
                status='skipped', reason='the model was not built')), **fields)
        elif variant:
            runner.run(part, lambda state, v=variant: bench.train(v, state), **fields)
        else:
            runner.run(part, getattr(bench, part), **fields)
    if bench is not None:
        bench.set_compiled(False)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``gpu`` options (size options default to the real sizes, or to tiny ones with --tiny)."""
    parser.add_argument('--out', required=True, metavar='PATH.jsonl',
                        help='JSON lines here, the Markdown tables beside it (suffix .md)')
    parser.add_argument('--tiny', action='store_true', help='every part at tiny size (runs on the CPU)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default=None, help='default: cuda if available')
    parser.add_argument('--models', nargs='+', choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument('--variants', nargs='+', choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument('--parts', nargs='+', choices=PARTS, default=list(PARTS),
                        help='profile also needs --profile')
    parser.add_argument('--profile', action='store_true', help='profile the bf16 step of the first model')
    parser.add_argument('--profile-rows', type=positive_int, default=20, help='top kernels kept (default 20)')
    parser.add_argument('--peak-tflops', type=float, default=None,
                        help='the device\'s dense bf16 peak TFLOP/s for MFU (default: looked up by name)')
    parser.add_argument('--compile-on-cpu', action='store_true', help='run the compiled variants on the CPU')
    parser.add_argument('--threads', type=positive_int, default=None, help='torch CPU threads')
    parser.add_argument('--seed', type=int, default=0)
    for key in SIZES:
        real, tiny = SIZES[key]
        kind = float if isinstance(real, float) else positive_int
        parser.add_argument('--' + key.replace('_', '-'), type=kind, default=None,
                            help=f'default {real} ({tiny} with --tiny)')
    parser.add_argument('--topk', type=positive_int, default=16, help='candidates re-ranked per query')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override keys of both configs')
