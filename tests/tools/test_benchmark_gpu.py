"""tools/benchmark.py gpu: every part at tiny size on the CPU, the MFU arithmetic, the time limits."""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / 'tools'))
import benchmark as dispatcher  # noqa: E402  (tools/benchmark.py)
from benchmarks import gpu  # noqa: E402
from benchmarks.flops import peak_tflops, utilisation  # noqa: E402

PEAK = 0.5  # TFLOP/s, given as --peak-tflops (the CPU has no entry in the table)
MEASURED_VARIANTS = ['bf16', 'bf16+ckpt', 'fp32', 'fp32+ckpt']


def read_lines(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    """One tiny run of every part, both models, the profile too (about 15 s on 2 cores)."""
    out = tmp_path_factory.mktemp('gpu') / 'gpu.jsonl'
    assert dispatcher.main(['gpu', '--tiny', '--device', 'cpu', '--threads', '1', '--peak-tflops', str(PEAK),
                            '--profile', '--out', str(out)]) == 0
    return read_lines(out), out.with_suffix('.md').read_text()


def test_every_part_of_both_models_is_measured(tiny_run):
    lines, _ = tiny_run
    header, rows = lines[0], lines[1:]
    assert header['part'] == 'header' and header['tiny'] and header['bf16_peak_tflops'] == PEAK
    parts = [(r['part'], r['model'], r.get('variant')) for r in rows]
    for model in ('vitl', 'vitb'):
        assert ('build', model, None) in parts and ('embed', model, None) in parts
        assert all(('train', model, v) in parts for v in gpu.VARIANTS)
    # retrieval and the profile run once, on the first model (ViT-L)
    assert ('retrieval', 'vitl', None) in parts and ('profile', 'vitl', None) in parts
    assert len(rows) == 2 * (2 + len(gpu.VARIANTS)) + 2
    builds = {r['model']: r for r in rows if r['part'] == 'build'}
    assert all(b['status'] == 'ok' and b['flops_per_sample'] > 0 and b['params_m'] > 0
               for b in builds.values())
    # the ViT-L config's wider image tower (48 at tiny size against 32) costs more FLOPs
    assert builds['vitl']['flops_per_sample'] > builds['vitb']['flops_per_sample']


def test_train_lines_and_their_mfu(tiny_run):
    lines, _ = tiny_run
    builds = {r['model']: r for r in lines if r['part'] == 'build'}
    train = [r for r in lines if r['part'] == 'train']
    for row in train:
        if 'compile' in row['variant']:  # skipped on the CPU, and the line says why
            assert row['status'] == 'skipped' and 'torch.compile on the CPU' in row['reason']
            continue
        assert row['status'] == 'ok', row
        assert row['batch_size'] == row['search_start'] == 4 and row['batch_capped']
        assert row['oom_batches'] == []
        assert row['samples_per_s'] > 0 and row['peak_memory_mib'] > 0 and len(row['s_per_step_all']) == 2
        assert row['samples_per_s'] == pytest.approx(4 / row['s_per_step'])
        # model FLOPs per step = FLOPs per sample (counted once) x batch; MFU against the bf16 peak
        assert row['flops_per_step'] == pytest.approx(builds[row['model']]['flops_per_sample'] * 4)
        assert row['peak_tflops'] == PEAK
        assert row['mfu'] == pytest.approx(row['flops_per_step'] / row['s_per_step'] / (PEAK * 1e12))
        assert (row['precision'], row['checkpointing']) == (gpu.VARIANTS[row['variant']][0],
                                                            gpu.VARIANTS[row['variant']][2])
    assert sorted(r['variant'] for r in train if r['status'] == 'ok') == sorted(MEASURED_VARIANTS * 2)


def test_mfu_by_hand():
    # 3e12 FLOPs per step in 0.5 s: 6 TFLOP/s achieved; on a 10 TFLOP/s peak that is 60%
    assert utilisation(3e12, 0.5, 10.0) == dict(achieved_tflops=6.0, peak_tflops=10.0, mfu=0.6)
    # R2D2 ViT-L-like: 250 GFLOPs per sample, batch 256 in 0.16 s on an H200's 989.4 TFLOP/s: 40.4%
    assert utilisation(250e9 * 256, 0.16, 989.4)['mfu'] == pytest.approx(0.40428, abs=1e-5)
    assert utilisation(1e12, 1.0, None)['mfu'] is None


@pytest.mark.parametrize('name, peak', [('NVIDIA H200', 989.4), ('NVIDIA H100 80GB HBM3', 989.4),
                                        ('NVIDIA H100 PCIe', 756.5), ('NVIDIA H200 NVL', 835.5),
                                        ('NVIDIA A100-SXM4-80GB', 312.0), ('NVIDIA GeForce RTX 4090', None)])
def test_the_bf16_peak_is_read_from_the_device_name(monkeypatch, name, peak):
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda device=None: name)
    assert peak_tflops(torch.device('cuda'), 'bf16') == peak
    assert peak_tflops(torch.device('cuda'), 'bf16', override=123.0) == 123.0  # --peak-tflops wins


def test_embed_retrieval_and_profile_lines(tiny_run):
    lines, _ = tiny_run
    embeds = [r for r in lines if r['part'] == 'embed']
    assert len(embeds) == 2
    for row in embeds:
        assert row['status'] == 'ok' and row['batch_size'] == 8
        assert set(row['towers']) == {'image/bf16', 'text/bf16', 'image/fp32', 'text/fp32'}
        for tower in row['towers'].values():
            assert tower['items_per_s'] > 0 and tower['flops_per_item'] > 0
            assert tower['mfu'] == pytest.approx(
                tower['flops_per_item'] * 8 / tower['s_per_batch'] / (PEAK * 1e12))
    retrieval = next(r for r in lines if r['part'] == 'retrieval')
    assert retrieval['status'] == 'ok' and (retrieval['images'], retrieval['texts']) == (256, 1024)
    assert retrieval['i2t']['queries'] == 256 and retrieval['t2i']['queries'] == 1024
    assert retrieval['i2t']['queries_per_s'] > 0 and retrieval['i2t_R@1'] > 90  # texts = image + noise
    assert retrieval['rerank']['pairs'] == 8 * 16 and retrieval['rerank']['pairs_per_s'] > 0
    profile = next(r for r in lines if r['part'] == 'profile')
    assert profile['status'] == 'ok' and profile['time_kind'] == 'self_cpu_time_total'
    assert len(profile['top']) == 20 and all(e['self_ms'] >= 0 for e in profile['top'])
    shares = [e['share'] for e in profile['top']]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-9


def test_markdown_tables(tiny_run):
    lines, text = tiny_run
    for heading in ('# GPU measurements', '## Models', '## Pre-training step', '## Embedding',
                    '## Retrieval evaluation', '## Profile: vitl bf16 step, batch 4'):
        assert heading in text
    bf16 = next(r for r in lines if r['part'] == 'train' and (r['model'], r['variant']) == ('vitl', 'bf16'))
    row = next(line for line in text.splitlines() if line.startswith('| vitl | bf16 |'))
    assert f'| {bf16["samples_per_s"]:,.1f} |' in row and f'| {100 * bf16["mfu"]:.1f}% |' in row
    assert '| vitb | bf16+compile | - |' in text and 'skipped: torch.compile on the CPU' in text


def test_a_part_over_its_limit_is_stopped_and_the_run_goes_on(tmp_path):
    out = tmp_path / 'gpu.jsonl'
    runner = gpu.Runner(str(out), budget_s=30, part_limit_s=0.3, device=torch.device('cpu'),
                        header=dict(device='cpu', torch=torch.__version__, tiny=True,
                                    bf16_peak_tflops=None, peak_source='-', budget_s=30, part_limit_s=0.3,
                                    matmul_precision='highest'))

    def endless(state):
        state['steps'] = 0
        while True:
            time.sleep(0.01)
            state['steps'] += 1

    start = time.perf_counter()
    stopped = runner.run('train', endless, model='m', variant='bf16')
    assert time.perf_counter() - start < 2
    assert stopped['status'] == 'timeout' and 'limit of 0.3 s' in stopped['reason']
    assert stopped['steps'] > 0 and stopped['seconds'] == pytest.approx(0.3, abs=0.25)
    after = runner.run('embed', lambda state: state.update(done=True), model='m')
    assert after['status'] == 'ok' and after['done']
    runner.deadline = time.perf_counter()  # the total budget is spent: the next part does not start
    assert runner.run('retrieval', lambda state: state.update(done=True), model='m')['status'] == 'skipped'
    assert [r['part'] for r in read_lines(out)] == ['header', 'train', 'embed', 'retrieval']
    assert 'timeout: over its limit of 0.3 s' in out.with_suffix('.md').read_text()


def test_a_slow_training_part_is_cut_at_its_limit(tmp_path):
    # 5 s a part: enough for the tiny build on a loaded machine, far too little for 100,000 steps
    out = tmp_path / 'gpu.jsonl'
    start = time.perf_counter()
    assert dispatcher.main(['gpu', '--tiny', '--device', 'cpu', '--threads', '1', '--models', 'vitb',
                            '--variants', 'bf16', '--parts', 'train', 'retrieval', '--iters', '100000',
                            '--part-limit-s', '5', '--out', str(out)]) == 0
    assert time.perf_counter() - start < 40
    train = next(r for r in read_lines(out) if r['part'] == 'train')
    assert train['status'] == 'timeout' and 4.5 < train['seconds'] < 6
    assert train['batch_size'] == 4 and 'mfu' not in train  # what it had measured when it was stopped
    assert next(r for r in read_lines(out) if r['part'] == 'retrieval')['status'] == 'ok'


def test_largest_batch_halves_after_out_of_memory():
    tried = []

    def step(batch):
        tried.append(batch)
        if batch > 3:
            raise torch.OutOfMemoryError(f'batch {batch} does not fit')

    failed = []
    assert gpu.largest_batch(step, 8, torch.device('cpu'), failed) == 2
    assert tried == [8, 4, 2] and failed == [8, 4]
    with pytest.raises(torch.OutOfMemoryError):
        gpu.largest_batch(lambda batch: step(100), 4, torch.device('cpu'))


def test_gradient_checkpointing_switches_every_encoder():
    parser = argparse.ArgumentParser()
    gpu.add_arguments(parser)
    args = parser.parse_args(['--tiny', '--out', 'unused.jsonl'])
    for key, (_, tiny) in gpu.SIZES.items():
        setattr(args, key, tiny)
    with tempfile.TemporaryDirectory() as tmp_dir:
        model = gpu.Bench('vitb', args, torch.device('cpu'), tmp_dir).model
    towers = [model.image_encoder.model, model.text_encoder.model]
    cross = [model.text_image_encoder, model.image_text_encoder]
    for enabled in (True, False):
        gpu.set_gradient_checkpointing(model, enabled)
        assert [t.is_gradient_checkpointing for t in towers] == [enabled] * 2
        assert [c.gradient_checkpointing for c in cross] == [enabled] * 2


def test_real_sizes_need_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip('a GPU is here')
    with pytest.raises(SystemExit, match='--tiny runs every part'):
        dispatcher.main(['gpu', '--device', 'cpu', '--out', str(tmp_path / 'gpu.jsonl')])
