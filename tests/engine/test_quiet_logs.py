"""Quiet logs: a run at log_level INFO holds none of mmengine's set-up and per-parameter lines; DEBUG does."""
import importlib.util
import io
import logging
import sys
from pathlib import Path

import pytest
from tqdm import tqdm

from r2d2lib.engine import StrictRunner
from r2d2lib.engine.hooks.progress_bar_hook import _AboveTheBar
from tests.engine.test_resume import runner_cfg

TOOLS = Path(__file__).resolve().parents[2] / 'tools'
NOISE = ('System environment', 'Config:', 'Hooks will be executed', 'paramwise_options --',
         'is skipped since its requires_grad', 'FileClient', 'HardDiskBackend',
         'The value is the same before and after calling')


def train_log(tiny_full_cfg, pipeline32, toy_data, work_dir, log_level) -> str:
    cfg = runner_cfg(tiny_full_cfg, pipeline32, toy_data, work_dir, max_iters=2)
    cfg.update(log_level=log_level, custom_hooks=cfg['custom_hooks'] + [dict(type='ProgressBarHook')])
    cfg['optim_wrapper']['paramwise_cfg'] = dict(norm_decay_mult=0.0, bias_decay_mult=0.0)
    cfg['default_hooks']['checkpoint']['interval'] = 2  # CheckpointHook: mmengine's FileClient warnings
    StrictRunner.from_cfg(cfg).train()
    (log,) = work_dir.glob('*/*.log')
    return log.read_text()


def test_a_run_at_info_logs_no_setup_dump_and_debug_brings_it_back(tiny_full_cfg, pipeline32, toy_data,
                                                                    tmp_path):
    quiet = train_log(tiny_full_cfg, pipeline32, toy_data, tmp_path / 'quiet', 'INFO')
    assert [n for n in NOISE if n in quiet] == [], quiet
    # what replaces them: one line each, with the counts (the full objective's teacher is frozen)
    summary = [line for line in quiet.splitlines() if 'optimizer: ' in line]
    assert len(summary) == 1 and ' frozen, not optimised (objective.teacher' in summary[0], summary
    assert 'log_level DEBUG (--verbose)' in quiet
    assert len(quiet.splitlines()) < 30, quiet

    verbose = train_log(tiny_full_cfg, pipeline32, toy_data, tmp_path / 'verbose', 'DEBUG')
    for line in ('System environment', 'Config:', 'Hooks will be executed', 'paramwise_options --'):
        assert line in verbose
    # the same parameter groups: DEBUG lists every norm and bias weight decay that INFO only counts
    custom = int(summary[0].split(' with paramwise options')[0].rsplit(', ', 1)[1])
    assert verbose.count('paramwise_options --') == custom > 0


def test_a_log_line_written_while_the_bar_is_shown_starts_a_line_of_its_own():
    console = io.StringIO()
    bar = tqdm(total=10, file=console, desc='train', mininterval=0)
    bar.update(1)
    handler = logging.StreamHandler(_AboveTheBar(console))
    logger = logging.getLogger('test_quiet_logs.bar')
    logger.addHandler(handler)
    try:
        logger.warning('a log line')
    finally:
        logger.removeHandler(handler)
        bar.close()
    before, _, _ = console.getvalue().partition('a log line')
    assert before.endswith('\r') and 'train:' in before  # the bar was cleared back to column 0 first
    assert console.getvalue().rstrip().split('\r')[-1].startswith('train:')  # and redrawn after


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f'tool_{name}', TOOLS / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('verbose', [False, True])
def test_verbose_sets_log_level_debug_in_train_and_demo(monkeypatch, verbose):
    train = load_tool('train')
    flag = ['--verbose'] if verbose else []
    monkeypatch.setattr(sys, 'argv', ['train.py', 'configs/demo/r2d2_tiny_shapes.py', *flag])
    assert train.build_config(train.parse_args()).log_level == ('DEBUG' if verbose else 'INFO')

    demo = load_tool('demo')
    assert demo.build_config(demo.parse_args(flag)).log_level == ('DEBUG' if verbose else 'INFO')


def test_the_quiet_constructor_builds_mmengine_s_parameter_groups(tiny_full_cfg):
    """Same tensors, order, learning rates and weight decays as DefaultOptimWrapperConstructor; the frozen
    momentum teacher is left out by both."""
    from mmengine.optim import DefaultOptimWrapperConstructor

    from r2d2lib.engine.optim_constructor import QuietOptimWrapperConstructor
    from r2d2lib.registry import MODELS
    model = MODELS.build({**tiny_full_cfg, '_scope_': 'r2d2lib'})
    cfg = dict(optim_wrapper_cfg=dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01)),
               paramwise_cfg=dict(custom_keys={'.temp': dict(decay_mult=0.0)}, norm_decay_mult=0.0,
                                  bias_decay_mult=0.0))
    ours = QuietOptimWrapperConstructor(**cfg)(model).optimizer.param_groups
    theirs = DefaultOptimWrapperConstructor(**cfg)(model).optimizer.param_groups
    assert len(ours) == len(theirs) > 50
    for a, b in zip(ours, theirs):
        assert [id(p) for p in a['params']] == [id(p) for p in b['params']]
        assert (a['lr'], a['weight_decay']) == (b['lr'], b['weight_decay'])
    frozen = {id(p) for name, p in model.named_parameters() if name.startswith('objective.teacher.')}
    assert frozen and not frozen & {id(p) for group in ours for p in group['params']}
    assert {group['weight_decay'] for group in ours} == {0.0, 0.01}
