"""tools/benchmarks/common.py: pieces shared by the benchmarks."""
import sys
from pathlib import Path

import torch
from torch import nn

from r2d2lib.models.queues import FeatureQueue

sys.path.insert(0, str(Path(__file__).parents[2] / 'tools'))
from benchmarks.common import fill_queue  # noqa: E402


def test_fill_queue_finds_the_queue_of_the_model_objective():
    """Fails before issue 17: since issue 14 the queue is ``model.objective.queue`` and ``--fill-queue``
    (train, train-step) silently filled nothing."""
    model = nn.Module()
    model.objective = nn.Module()
    model.objective.queue = FeatureQueue(4, size=6, decay=0.5)
    assert fill_queue(model, 2, torch.Generator().manual_seed(0)) == 6
    queue = model.objective.queue
    assert queue.num_filled() == 6 and queue.filled().all()
    assert queue.weights.tolist() == [0.25, 0.25, 0.5, 0.5, 1.0, 1.0]  # decayed per batch of age
