"""FeatureQueue: exact wrap-around, weight decay, checkpoint state and distributed enqueue."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from r2d2lib.models.queues import FeatureQueue


def batch(start, n, dim=2):
    """Features whose values name their row: row r of the stream is [r, -r]."""
    rows = torch.arange(start, start + n, dtype=torch.float32)
    feats = torch.stack([rows, -rows], dim=1)[:, :dim]
    return feats, feats * 10, rows.long()


def test_wraps_around_and_decays_every_weight_but_the_new_ones():
    queue = FeatureQueue(dim=2, size=5, decay=0.5)
    assert not queue.filled().any() and queue.weights.sum() == 0
    queue.enqueue(*batch(0, 3))   # slots 0-2
    queue.enqueue(*batch(3, 3))   # slots 3, 4, then wraps to 0
    assert queue.ptr.item() == 1
    assert queue.image_ids.tolist() == [5, 1, 2, 3, 4]
    assert queue.image_feats[:, 0].tolist() == [5, 1, 2, 3, 4]
    assert queue.text_feats[:, 0].tolist() == [50, 10, 20, 30, 40]
    assert queue.weights.tolist() == [1.0, 0.5, 0.5, 1.0, 1.0]
    queue.enqueue(*batch(6, 2))   # slots 1, 2
    assert queue.image_ids.tolist() == [5, 6, 7, 3, 4]
    assert queue.weights.tolist() == [0.5, 1.0, 1.0, 0.5, 0.5]
    assert queue.ptr.item() == 3


def test_a_batch_larger_than_the_queue_keeps_its_last_rows():
    queue = FeatureQueue(dim=2, size=4, decay=0.99)
    queue.enqueue(*batch(0, 6))
    assert sorted(queue.image_ids.tolist()) == [2, 3, 4, 5] and queue.weights.eq(1).all()


def test_state_travels_in_the_state_dict():
    queue = FeatureQueue(dim=2, size=5)
    queue.enqueue(*batch(0, 3))
    restored = FeatureQueue(dim=2, size=5)
    restored.load_state_dict(queue.state_dict())
    for key in ('image_feats', 'text_feats', 'image_ids', 'weights', 'ptr'):
        assert torch.equal(getattr(restored, key), getattr(queue, key)), key
    snapshot = queue.state()
    queue.enqueue(*batch(3, 3))
    assert snapshot['image_ids'].tolist() == [0, 1, 2]  # the filled slots, a copy


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match='size'):
        FeatureQueue(dim=2, size=0)
    with pytest.raises(ValueError, match='decay'):
        FeatureQueue(dim=2, size=4, decay=1.5)


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    queue = FeatureQueue(dim=2, size=7, decay=0.9)
    for step in range(3):  # 3 steps x 2 ranks x 2 rows = 12 rows through 7 slots
        queue.enqueue(*batch(step * 4 + rank * 2, 2))
    torch.save({k: v for k, v in queue.state_dict().items()}, out.format(rank))
    dist.destroy_process_group()


def test_two_ranks_enqueue_the_gathered_batch_in_rank_order(tmp_path, free_port):
    out = str(tmp_path / 'rank{}.pt')
    mp.start_processes(_worker, args=(2, free_port, out), nprocs=2, start_method='spawn')
    states = [torch.load(out.format(r)) for r in range(2)]
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key  # every rank holds the same queue
    single = FeatureQueue(dim=2, size=7, decay=0.9)
    for step in range(3):
        single.enqueue(*batch(step * 4, 4))  # the gathered batch: rank 0's rows, then rank 1's
    for key, value in single.state_dict().items():
        assert torch.equal(states[0][key], value), key


def test_slots_serve_only_the_filled_prefix_until_the_queue_is_full():
    """Fails before issue 17: slots() served all ``size`` slots from the first step."""
    queue = FeatureQueue(dim=2, size=5, decay=0.5)
    assert queue.slots()['image_feats'].shape == (0, 2)
    queue.enqueue(*batch(0, 3))
    slots, state = queue.slots(), queue.state()
    assert slots['image_feats'].shape == (3, 2) and slots['valid'].all()
    assert slots['image_feats'].data_ptr() == queue.image_feats.data_ptr()  # a view, no copy
    for key in state:
        assert torch.equal(slots[key], state[key]), key
    queue.enqueue(*batch(3, 3))  # wraps: full from now on
    assert queue.slots()['image_feats'].shape == (5, 2) and queue.num_filled() == 5


def test_slots_count_follows_buffers_written_another_way():
    queue = FeatureQueue(dim=2, size=5)
    queue.enqueue(*batch(0, 2))
    assert queue.num_filled() == 2
    restored = FeatureQueue(dim=2, size=5)
    assert restored.num_filled() == 0
    restored.load_state_dict(queue.state_dict())
    assert restored.num_filled() == 2
    restored.enqueue(*batch(2, 1))
    assert restored.num_filled() == 3 and restored.slots()['image_ids'].tolist() == [0, 1, 2]
    restored.image_ids.fill_(7)  # a direct write: read from the buffers again
    assert restored.num_filled() == 5
