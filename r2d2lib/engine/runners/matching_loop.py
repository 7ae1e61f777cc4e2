"""Val and test loops of image-text matching (ICM, IQM): ``model.match`` on every labelled pair.

Each batch of (image, text, label) pairs goes through the model's data
preprocessor and ``model.match(pixels, input_ids, attention_mask) -> [B]``
(P(matched), mean of R2D2's two ITM heads); ``dict(score, label)`` per pair
goes to the evaluator (``MatchingMetric``: AUC and accuracy). The sampler
shards the pairs over ranks; mmengine gathers the results and drops the
sampler's padding.
"""
from typing import Dict, List, Sequence, Union

import torch
from mmengine.evaluator import Evaluator
from mmengine.runner import TestLoop, ValLoop
from torch.utils.data import DataLoader

from r2d2lib.registry import LOOPS

from .eval_base import EvalLoopMixin, progress

LABEL_KEYS = ('label', 'gt_label')


def pair_labels(inputs: dict, data_samples: Sequence) -> torch.Tensor:
    """The 0/1 label of every pair: ``inputs['labels']``, else ``label`` / ``gt_label`` of the samples."""
    if isinstance(inputs, dict) and inputs.get('labels') is not None:
        return torch.as_tensor(inputs['labels']).reshape(-1).long().cpu()
    labels = []
    for index, sample in enumerate(data_samples or ()):
        for key in LABEL_KEYS:
            value = sample.get(key) if isinstance(sample, dict) else getattr(sample, key, None)
            if value is not None:
                labels.append(int(torch.as_tensor(value).reshape(-1)[0]))
                break
        else:
            raise KeyError(f'matching sample {index} of the batch has no {" or ".join(LABEL_KEYS)} '
                           '(pack it with PackInputs(algorithm_keys=[..., "label"]))')
    return torch.tensor(labels, dtype=torch.long)


class _MatchingLoopMixin(EvalLoopMixin):
    """Run logic shared by the matching val and test loops."""

    evaluator: Evaluator

    def run(self) -> dict:
        self.require('match', reason='matching probabilities of image-text pairs')
        return self.run_with_hooks(self._evaluate)

    def _evaluate(self) -> Dict[str, float]:
        stage, runner = self.stage, self.runner
        for idx, data_batch in enumerate(progress(self.dataloader, desc=f'{stage}: match pairs',
                                                  total=len(self.dataloader))):
            runner.call_hook(f'before_{stage}_iter', batch_idx=idx, data_batch=data_batch)
            outputs = self._score(data_batch)
            self.evaluator.process(data_samples=outputs, data_batch=data_batch)
            runner.call_hook(f'after_{stage}_iter', batch_idx=idx, data_batch=data_batch,
                             outputs=outputs)
        return self.evaluator.evaluate(len(self.dataloader.dataset))

    def _score(self, data_batch) -> List[dict]:
        data = self.model.data_preprocessor(data_batch, False)
        inputs = data['inputs']
        with self.autocast():
            scores = self.model.match(inputs['images'], inputs['input_ids'], inputs['attention_mask'])
        labels = pair_labels(inputs, data.get('data_samples'))
        if labels.numel() != scores.numel():
            raise ValueError(f'{scores.numel()} matching scores but {labels.numel()} labels in a batch')
        return [dict(score=float(s), label=int(y)) for s, y in zip(scores.float().cpu(), labels)]


@LOOPS.register_module()
class MatchingValLoop(_MatchingLoopMixin, ValLoop):
    """Validation loop of image-text matching: ``model.match`` per pair -> ``MatchingMetric``.

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader or dict): Pairs with a 0/1 ``label``.
        evaluator (Evaluator or dict or list): Usually ``MatchingMetric``.
        fp16 (bool): Autocast to float16 (CUDA only; ignored on CPU).
    """

    stage = 'val'

    def __init__(self, runner, dataloader: Union[DataLoader, Dict],
                 evaluator: Union[Evaluator, Dict, List], fp16: bool = False) -> None:
        super().__init__(runner, dataloader, evaluator, fp16=fp16)


@LOOPS.register_module()
class MatchingTestLoop(_MatchingLoopMixin, TestLoop):
    """Test loop: :class:`MatchingValLoop` calling the ``test_*`` hooks."""

    stage = 'test'

    def __init__(self, runner, dataloader: Union[DataLoader, Dict],
                 evaluator: Union[Evaluator, Dict, List], fp16: bool = False) -> None:
        super().__init__(runner, dataloader, evaluator, fp16=fp16)
