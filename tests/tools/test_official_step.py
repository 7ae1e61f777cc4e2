"""tools/benchmarks/official_step.py: the official training step, ported line for line, computes our
GCPR + FGR objective (the equal-objective comparison of issue 17 compares like with like)."""
import copy
import sys
from pathlib import Path

import pytest
import torch
from mmengine.dataset import default_collate
from mmengine.registry import init_default_scope

from r2d2lib.registry import DATASETS, MODELS

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / 'tools'))
from benchmarks import official_step  # noqa: E402  (tools/benchmarks/official_step.py)

init_default_scope('r2d2lib')


@pytest.fixture
def batch(toy_data, pipeline32):
    dataset = DATASETS.build(dict(type='RetrievalDataset', data_root=str(toy_data), ann_file='train.jsonl',
                                  pipeline=pipeline32))
    first = dataset[0]
    other = next(dataset[i] for i in range(1, len(dataset))
                 if dataset.get_data_info(i)['image_id'] != dataset.get_data_info(0)['image_id'])
    return default_collate([first, other])


def test_official_step_equals_our_gcpr_fgr_objective(tiny_model_cfg, batch):
    """Batch 2 with two image ids: each row's only hard negative is the other row, so both draws agree."""
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg['objective'] = copy.deepcopy(official_step.GCPR_FGR)
    cfg['image_encoder']['frozen'] = True  # the official step runs the ViT under no_grad (line 24)
    torch.manual_seed(0)
    ours = MODELS.build(cfg)
    ours.init_weights()
    official = official_step.make_official(copy.deepcopy(ours))
    for model in (ours, official):  # no dropout: the two paths draw their masks differently
        model.train()
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
            if hasattr(module, 'dropout') and isinstance(module.dropout, float):
                module.dropout = 0.0
    inputs = ours.data_preprocessor(batch, True)['inputs']
    assert inputs['image_ids'].unique().numel() == 2
    losses = ours(inputs, mode='loss')
    gcpr, fgr = official_step.official_loss(official, inputs['images'], inputs['input_ids'],
                                            inputs['attention_mask'], inputs['image_ids'])
    torch.testing.assert_close(gcpr, losses['loss_gcpr'], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fgr, losses['loss_fgr'], rtol=1e-5, atol=1e-6)
    (gcpr + fgr).backward()
    (losses['loss_gcpr'] + losses['loss_fgr']).backward()
    for (name, a), b in zip(ours.named_parameters(), official.parameters()):
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)
