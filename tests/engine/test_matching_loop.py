"""The matching val / test loops: the tiny R2D2's P(matched) of each labelled pair, AUC and accuracy
equal to sklearn on the pairs scored one at a time."""
import pytest
import torch

from r2d2lib.engine.runners import MatchingTestLoop, MatchingValLoop
from tests.engine.test_retrieval_loop import build_tiny_r2d2, toy_records
from tests.evaluation.loop_helpers import RecordDataset, TableModel, make_runner, one_thread, strip

single_thread = pytest.fixture(autouse=True)(one_thread)


def matching_records(toy_data, num_pairs: int = 15):
    """Pairs of the toy test set: even pairs an image with its caption (label 1), odd with the
    caption of the next image (label 0)."""
    records = toy_records(toy_data, multi_positive=False)
    pairs = []
    for n in range(num_pairs):
        record = records[n]
        if n % 2:
            other = records[(n + 2) % len(records)]
            record = dict(record, text=other['text'], text_idx=other['text_idx'])
        pairs.append(dict(record, label=int(n % 2 == 0)))
    return pairs


def matching_pipeline(pipeline32):
    pipeline = [dict(step) for step in pipeline32]
    pipeline[-1] = dict(pipeline[-1], algorithm_keys=['text', 'image_idx', 'text_idx', 'label'])
    return pipeline


def test_tiny_r2d2_matching_equals_pairwise_reference(tmp_path, toy_data, tiny_model_cfg, pipeline32):
    from sklearn.metrics import roc_auc_score
    model = build_tiny_r2d2(tiny_model_cfg)
    dataset = RecordDataset(matching_records(toy_data), pipeline=matching_pipeline(pipeline32))
    scores, labels = [], []
    with torch.no_grad():
        for i in range(len(dataset)):
            sample = dataset[i]
            tokens = model.data_preprocessor.tokenize([sample['data_samples'].text])
            pixels = model.data_preprocessor.normalize(sample['inputs'][None])
            scores.append(float(model.match(pixels, tokens['input_ids'], tokens['attention_mask'])))
            labels.append(int(sample['data_samples'].label))
    expected_auc = 100 * roc_auc_score(labels, scores)
    expected_acc = 100 * sum((s >= 0.5) == bool(y) for s, y in zip(scores, labels)) / len(labels)
    runner = make_runner(tmp_path, model, dataset, loop='Matching', metric=dict(type='MatchingMetric'),
                         batch_size=4)
    assert isinstance(runner.val_loop, MatchingValLoop)
    metrics = strip(runner.val(), 'matching')
    assert metrics == pytest.approx({'AUC': expected_auc, 'accuracy': expected_acc}, abs=1e-6)
    assert isinstance(runner.test_loop, MatchingTestLoop)
    assert strip(runner.test(), 'matching') == pytest.approx(metrics)


def test_model_without_match_is_a_clear_error(tmp_path, toy_data, pipeline32):
    dataset = RecordDataset(matching_records(toy_data, 4), pipeline=matching_pipeline(pipeline32))
    runner = make_runner(tmp_path, TableModel(torch.eye(2), torch.eye(2)), dataset, loop='Matching',
                         metric=dict(type='MatchingMetric'))
    with pytest.raises(TypeError, match='needs model.match'):
        runner.val()
