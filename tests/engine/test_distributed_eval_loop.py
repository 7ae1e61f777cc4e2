"""2 gloo processes give the same retrieval, matching and zero-shot metrics as 1 process.

One spawn runs all three loops (spawning costs most of the time): retrieval with several
positives per text, 2 gallery-only images and re-ranking (10 images and 16 texts dealt over the
ranks, candidates' token features fetched point-to-point), matching on 15 pairs (the sampler
pads one), zero-shot with 21 prompts (uneven prompt shards).
"""
import os
from datetime import timedelta

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from tests.engine.test_matching_loop import matching_pipeline, matching_records
from tests.engine.test_retrieval_loop import build_tiny_r2d2, toy_records
from tests.engine.test_zero_shot_loop import classification_dataset
from tests.evaluation.loop_helpers import RecordDataset, make_runner, one_thread

single_thread = pytest.fixture(autouse=True)(one_thread)


def run_all_loops(model, work_dir, toy_data, pipeline, batch_size):
    """Metrics of the three val loops on the tiny data."""
    metrics = {}
    dataset = RecordDataset(toy_records(toy_data, True), pipeline=pipeline)
    metrics.update(make_runner(work_dir, model, dataset, batch_size=batch_size, top_k=3, chunk_size=2,
                               rerank_batch_size=4,
                               metric=dict(type='RetrievalMetric', ks=(1, 2, 5))).val())
    dataset = RecordDataset(matching_records(toy_data), pipeline=matching_pipeline(pipeline))
    metrics.update(make_runner(work_dir, model, dataset, loop='Matching', batch_size=batch_size,
                               metric=dict(type='MatchingMetric')).val())
    dataset = classification_dataset(toy_data, pipeline)
    metrics.update(make_runner(work_dir, model, dataset, loop='ZeroShot', batch_size=batch_size,
                               metric=dict(type='ZeroShotAccuracy')).val())
    return metrics


def _worker(rank, world_size, port, work_dir, cfg, state_path, toy_data, pipeline, queue):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    os.chdir(work_dir)  # mmengine's collect_results_cpu writes .dist_test/
    torch.set_num_threads(1)
    torch_dist.init_process_group('gloo', rank=rank, world_size=world_size,
                                  timeout=timedelta(seconds=120))
    try:
        model = build_tiny_r2d2(cfg)
        model.load_state_dict(torch.load(state_path))
        queue.put((rank, run_all_loops(model, work_dir, toy_data, pipeline, batch_size=2)))
    finally:
        torch_dist.destroy_process_group()


def test_two_ranks_equal_one(tmp_path, toy_data, tiny_model_cfg, pipeline32, free_port):
    model = build_tiny_r2d2(tiny_model_cfg)
    state_path = str(tmp_path / 'model.pt')
    torch.save(model.state_dict(), state_path)
    single = run_all_loops(model, tmp_path, toy_data, pipeline32, batch_size=3)
    assert {'retrieval/rerank_R@M', 'matching/AUC', 'zero_shot/top5'} <= set(single)
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(rank, 2, free_port, str(tmp_path), tiny_model_cfg,
                                               state_path, toy_data, pipeline32, queue))
             for rank in range(2)]
    for proc in procs:
        proc.start()
    try:
        results = [queue.get(timeout=240) for _ in procs]
        for proc in procs:
            proc.join(timeout=30)
            assert proc.exitcode == 0
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
    for _, metrics in results:
        assert metrics == pytest.approx(single, abs=1e-6)
    assert 0 < single['retrieval/rerank_R@M'] < 100
