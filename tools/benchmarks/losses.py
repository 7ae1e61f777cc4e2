"""``loss``: the queue losses (TgD, MoCo) at a full queue, ours against the code they replaced.

    python tools/benchmark.py loss [--loss tgd|moco] [--batch-size 2] [--queue-size 65536]
        [--dim 768] [--repeats 5] [--threads 1] [--json OUT]

One forward + backward of the loss at batch ``--batch-size`` against a full queue
(``--queue-size`` slots of ``--dim`` features, read through ``FeatureQueue.slots()`` and written
in place by ``enqueue`` between the loss and its backward pass, as the training step does).

The baseline is the implementation it replaced, kept here line for line: ``TargetDistillLoss.forward``
of r2d2lib/models/losses/target_distill.py at commit d7ce384, lines 76-97 (batch and queue
features concatenated into the columns, which copies the queue, and autograd keeping the copies
for the backward pass), and ``MoCoLoss._one_way`` of r2d2lib/models/losses/info_nce.py at d7ce384,
lines 72-82 (``negatives.detach().clone()``). Both are what the training step ran; nothing is added.

Per repeat the two methods run alternately (the order flips every repeat), each timed in CPU
seconds of this process (``time.process_time``) and wall seconds; the summary prints the median
and min-max of ``--repeats`` repeats and their ratio. Memory, in a separate pass (the tracking
costs time): the peak of live tensors created by the loss (every new tensor storage counted
until it is freed; the queue itself is not counted) and the process's peak RSS above its RSS
before the call (``VmHWM`` after resetting it, Linux).
"""
import argparse
import gc
import statistics
import time
import weakref
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from r2d2lib.models.losses import MoCoLoss, TargetDistillLoss
from r2d2lib.models.losses.gcpr import id_targets
from r2d2lib.models.losses.target_distill import weighted_soft_cross_entropy
from r2d2lib.models.queues import FeatureQueue
from r2d2lib.models.utils import similarity_fp32

from .common import MIB, malloc_trim, positive_int, report_lines, reset_peak_rss, rss_mib, vm_hwm_mib


# ----------------------------------------------------------------- the baselines (d7ce384, line for line)
def old_tgd_forward(alpha, image_embeds, text_embeds, image_ids, temperature, teacher_image, teacher_text,
                    queue):
    """target_distill.py@d7ce384 lines 76-97 (one process: the gathers are the identity)."""
    temp = temperature
    queue_images, queue_texts = queue['image_feats'].detach(), queue['text_feats'].detach()
    all_ids = image_ids
    column_ids = torch.cat([all_ids, queue['image_ids']])
    weights = torch.cat([torch.ones_like(all_ids, dtype=torch.float32), queue['weights'].float()])
    valid = queue.get('valid')
    if valid is not None:
        valid = torch.cat([torch.ones_like(all_ids, dtype=torch.bool), valid])
    image_columns = torch.cat([image_embeds.float(), queue_images.float()])
    text_columns = torch.cat([text_embeds.float(), queue_texts.float()])
    logits_i2t = similarity_fp32(image_embeds, text_columns, temp)
    logits_t2i = similarity_fp32(text_embeds, image_columns, temp)
    with torch.no_grad():
        ground_truth = id_targets(image_ids, column_ids)
        teacher_texts = torch.cat([teacher_text.float(), queue_texts.float()])
        teacher_images = torch.cat([teacher_image.float(), queue_images.float()])
        soft = TargetDistillLoss._soft_targets
        soft_i2t = soft(similarity_fp32(teacher_image.detach(), teacher_texts, temp), valid)
        soft_t2i = soft(similarity_fp32(teacher_text.detach(), teacher_images, temp), valid)
        targets_i2t = alpha * soft_i2t + (1 - alpha) * ground_truth
        targets_t2i = alpha * soft_t2i + (1 - alpha) * ground_truth
    return (weighted_soft_cross_entropy(logits_i2t, targets_i2t, weights, valid) +
            weighted_soft_cross_entropy(logits_t2i, targets_t2i, weights, valid)) / 2


def old_moco_one_way(queries, keys, negatives, valid, temperature):
    """info_nce.py@d7ce384 lines 72-82."""
    queries, keys = queries.float(), keys.detach().float()
    positive = (queries * keys).sum(dim=1, keepdim=True) / temperature
    negative = similarity_fp32(queries, negatives.detach().clone(), temperature)
    if valid is not None:
        negative = negative.masked_fill(~valid, float('-inf'))
    logits = torch.cat([positive, negative], dim=1)
    return F.cross_entropy(logits, torch.zeros_like(positive[:, 0], dtype=torch.long))


def old_moco_forward(image_embeds, text_embeds, image_ids, temperature, teacher_image, teacher_text, queue):
    """info_nce.py@d7ce384 ``MoCoLoss.forward``."""
    valid, temperature = queue.get('valid'), temperature.detach()
    return (old_moco_one_way(image_embeds, teacher_text, queue['text_feats'], valid, temperature) +
            old_moco_one_way(text_embeds, teacher_image, queue['image_feats'], valid, temperature)) / 2


# ----------------------------------------------------------------- measurement
class LiveTensorPeak(TorchDispatchMode):
    """Peak bytes of tensor storages created inside the mode and alive at once."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._seen = set()

    def _free(self, key, nbytes):
        self._seen.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in tree_leaves((args, kwargs))
                  if isinstance(a, torch.Tensor)}
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key in inputs or key in self._seen or storage.nbytes() == 0:
                continue
            self._seen.add(key)
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
            weakref.finalize(t, self._free, key, storage.nbytes())
        return out


def make_case(args) -> Dict:
    """The queue (full, as after a cycle of training) and the step's inputs."""
    g = torch.Generator().manual_seed(0)
    n, d = args.batch_size, args.dim
    queue = FeatureQueue(d, size=args.queue_size, decay=0.99)
    for buffer in (queue.image_feats, queue.text_feats):
        buffer.copy_(F.normalize(torch.randn(args.queue_size, d, generator=g), dim=1))
    queue.image_ids.copy_(torch.arange(args.queue_size) + n)
    queue.weights.copy_(0.99 ** (torch.arange(args.queue_size).flip(0) // n).float())
    feats = [F.normalize(torch.randn(n, d, generator=g), dim=1) for _ in range(4)]
    return dict(queue=queue, feats=feats, ids=torch.arange(n))


def step_fn(method: str, loss: str, case: Dict) -> Callable[[], float]:
    """One forward, the enqueue (in place), one backward; returns the loss value."""
    queue, feats, ids = case['queue'], case['feats'], case['ids']
    if loss == 'tgd':
        ours = TargetDistillLoss(alpha=0.4)
        fn = ours if method == 'ours' else (lambda *a: old_tgd_forward(0.4, *a))
    else:
        fn = MoCoLoss() if method == 'ours' else old_moco_forward

    def run() -> float:
        image, text = feats[0].clone().requires_grad_(), feats[1].clone().requires_grad_()
        tau = torch.tensor(0.07, requires_grad=True)
        value = fn(image, text, ids, tau, feats[2], feats[3], queue.slots())
        queue.enqueue(feats[2], feats[3], ids + 10 ** 9)
        value.backward()
        value = value.detach()
        return value.item()
    return run


def summarize(values: List[float]) -> Dict[str, float]:
    return dict(median=statistics.median(values), min=min(values), max=max(values))


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    methods = ('ours', 'baseline')
    case = make_case(args)
    runs = {m: step_fn(m, args.loss, case) for m in methods}
    for m in methods:  # warm-up, and the two give the same value
        runs[m]()
    times = {m: dict(cpu=[], wall=[]) for m in methods}
    for repeat in range(args.repeats):
        for m in (methods if repeat % 2 == 0 else methods[::-1]):
            gc.collect()
            cpu, wall = time.process_time(), time.perf_counter()
            runs[m]()
            times[m]['cpu'].append(time.process_time() - cpu)
            times[m]['wall'].append(time.perf_counter() - wall)
    lines = []
    for m in methods:
        gc.collect()
        malloc_trim()
        before = rss_mib()
        reset_peak_rss()
        with LiveTensorPeak() as tracker:
            runs[m]()
        peak_rss = vm_hwm_mib() - before
        lines.append(dict(method=m, loss=args.loss, batch_size=args.batch_size, queue_size=args.queue_size,
                          dim=args.dim, threads=torch.get_num_threads(), repeats=args.repeats,
                          cpu_s=summarize(times[m]['cpu']), wall_s=summarize(times[m]['wall']),
                          live_tensor_peak_mib=tracker.peak / MIB, peak_rss_above_start_mib=peak_rss))
    ratio = dict(method='baseline / ours',
                 cpu_s_median=lines[1]['cpu_s']['median'] / lines[0]['cpu_s']['median'],
                 wall_s_median=lines[1]['wall_s']['median'] / lines[0]['wall_s']['median'])
    report_lines(lines + [ratio], args.json)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--loss', choices=['tgd', 'moco'], default='tgd')
    parser.add_argument('--batch-size', type=positive_int, default=2)
    parser.add_argument('--queue-size', type=positive_int, default=65536)
    parser.add_argument('--dim', type=positive_int, default=768)
    parser.add_argument('--repeats', type=positive_int, default=5)
    parser.add_argument('--threads', type=positive_int, default=1, help='torch threads (default 1)')
    parser.add_argument('--json', metavar='OUT', help='write the measurements to this JSON file')
