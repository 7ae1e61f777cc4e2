"""--resume after a run was killed while saving: a truncated latest checkpoint is named, and the automatic
resume falls back to the newest readable checkpoint with a warning naming both, then ends exactly where an
uninterrupted run ends."""
import pytest
import torch

from r2d2lib.engine import StrictRunner
from r2d2lib.io import CheckpointFileError
from tests.engine.test_resume import runner_cfg


def test_a_truncated_latest_checkpoint_falls_back_to_the_newest_readable_one(tiny_model_cfg, toy_data,
                                                                            tmp_path, pipeline32):
    work = tmp_path / 'run'
    straight = StrictRunner.from_cfg(runner_cfg(tiny_model_cfg, pipeline32, toy_data, work, 6))
    straight.train()  # checkpoints at iterations 3 and 6
    final = {k: v.clone() for k, v in straight.model.state_dict().items()}
    latest = work / 'iter_6.pth'
    data = latest.read_bytes()
    latest.write_bytes(data[:len(data) // 3])  # killed while writing it

    explicit = StrictRunner.from_cfg(runner_cfg(tiny_model_cfg, pipeline32, toy_data, tmp_path / 'x', 6,
                                                resume=str(latest)))
    with pytest.raises(CheckpointFileError, match=str(latest)):
        explicit.train()  # a checkpoint named by the user: an error naming it, no silent substitute

    cfg = runner_cfg(tiny_model_cfg, pipeline32, toy_data, work, 6)
    cfg.update(resume=True, load_from=None)  # --resume: the work dir's latest checkpoint
    torch.manual_seed(123)
    resumed = StrictRunner.from_cfg(cfg)
    resumed.train()
    text = '\n'.join(p.read_text() for p in work.rglob('*.log'))  # the warning, in the run's log
    assert f'The latest checkpoint {latest} cannot be read' in text
    assert f'resuming from {work / "iter_3.pth"}, the newest readable checkpoint' in text
    assert resumed.iter == 6
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, final[key]), key
