"""The process group's backend: a config's choice honoured, refused with a clear error where it cannot
work; ``--auto-scale-lr`` refused for a config without a base batch size. (The launcher itself runs in
tests/tools/test_dist_train.py.)"""
import argparse
import sys
from pathlib import Path

import pytest
import torch

from r2d2lib.engine import StrictRunner

sys.path.insert(0, str(Path(__file__).parents[2] / 'tools'))
import train  # noqa: E402  (tools/train.py)


@pytest.mark.skipif(torch.cuda.is_available(), reason='a machine without CUDA')
@pytest.mark.parametrize('launcher,backend,match', [('pytorch', 'nccl', "backend='nccl' needs CUDA"),
                                                    ('slurm', None, "launcher 'slurm' without CUDA")])
def test_what_cannot_work_without_cuda_is_refused_by_name(tmp_path, launcher, backend, match):
    with pytest.raises(ValueError, match=match):
        StrictRunner(model=torch.nn.Linear(2, 2), work_dir=str(tmp_path), launcher=launcher,
                     env_cfg=dict(dist_cfg=dict(backend=backend)))


def test_auto_scale_lr_needs_a_base_batch_size(tmp_path):
    config = tmp_path / 'no_scale.py'
    config.write_text("optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1))\n")
    args = argparse.Namespace(config=str(config), cfg_options={}, work_dir=str(tmp_path), launcher='none',
                              auto_scale_lr=True, amp=False, allow_pickle=False, resume=None)
    with pytest.raises(SystemExit, match='sets no auto_scale_lr.base_batch_size'):
        train.build_config(args)
