"""Zero-shot pieces: prompts, CLIP's prompt ensembling by hand, ZeroShotAccuracy by hand."""
import math

import pytest
import torch

from r2d2lib.evaluation import ZeroShotAccuracy, class_prompts, ensemble_class_embeddings, zero_shot_logits


def test_class_prompts_are_class_major_and_checked():
    assert class_prompts(['猫', '狗'], ['一只{}', '{}的照片']) == ['一只猫', '猫的照片', '一只狗', '狗的照片']
    with pytest.raises(ValueError, match='no "{}"'):
        class_prompts(['猫'], ['一只猫'])
    with pytest.raises(ValueError, match='need classes'):
        class_prompts([], ['{}'])


def test_ensembling_by_hand():
    # class 0: prompts (3, 4) and (0, 2) -> normalised (0.6, 0.8), (0, 1) -> mean (0.3, 0.9)
    #          -> / sqrt(0.9) ; class 1: (-2, 0) and (-5, 0) -> (-1, 0)
    prompts = torch.tensor([[3.0, 4.0], [0.0, 2.0], [-2.0, 0.0], [-5.0, 0.0]])
    classes = ensemble_class_embeddings(prompts, num_templates=2)
    norm = math.sqrt(0.3 ** 2 + 0.9 ** 2)
    assert torch.allclose(classes, torch.tensor([[0.3 / norm, 0.9 / norm], [-1.0, 0.0]]))
    # not the mean of the raw embeddings: that would point at (1.5, 3) / |.| = (0.447, 0.894)
    assert not torch.allclose(classes[0], torch.tensor([0.4472, 0.8944]), atol=1e-3)
    with pytest.raises(ValueError, match='groups of 3'):
        ensemble_class_embeddings(prompts, num_templates=3)
    logits = zero_shot_logits(torch.tensor([[2.0, 0.0]]), classes)
    assert torch.allclose(logits, torch.tensor([[0.3 / norm, -1.0]]))


def test_accuracy_by_hand_from_logits_and_predictions():
    metric = ZeroShotAccuracy(topk=(1, 2))
    metric.process(None, [dict(logits=torch.tensor([0.1, 0.9, 0.5]), gt_label=1),   # top-1 hit
                          dict(logits=torch.tensor([0.1, 0.9, 0.5]), gt_label=2),   # top-2 hit
                          dict(pred_topk=torch.tensor([0, 1, 2]), gt_label=2)])     # miss at 2
    metrics = metric.evaluate(3)
    assert metrics == pytest.approx({'zero_shot/top1': 100 / 3, 'zero_shot/top2': 200 / 3})
    with pytest.raises(ValueError):
        ZeroShotAccuracy(topk=(0, ))
