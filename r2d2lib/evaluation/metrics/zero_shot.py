"""Top-k accuracy of zero-shot image classification with class-name prompts."""
from typing import Any, Dict, List, Optional, Sequence

import torch
from mmengine.evaluator import BaseMetric

from r2d2lib.registry import METRICS


@METRICS.register_module()
class ZeroShotAccuracy(BaseMetric):
    """Top-1 and top-5 accuracy (in percent) of zero-shot classification.

    Each element given to :meth:`process` is one image:
    ``dict(pred_topk=LongTensor[K] (classes, best first), gt_label=int)``, or
    ``dict(logits=Tensor[C], gt_label=int)`` from which the top classes are
    taken. Only the top ``max(topk)`` classes of an image are stored. With fewer
    than k classes, top-k accuracy is 100%.

    Keys: ``top1``, ``top5`` (``zero_shot/top1`` with the default prefix).

    Args:
        topk (Sequence[int]): The k of the reported top-k accuracies.
        prefix (str): Prefix of the keys.
        collect_device (str): Device used to collect results across ranks.
    """

    default_prefix: Optional[str] = 'zero_shot'

    def __init__(self, topk: Sequence[int] = (1, 5), prefix: Optional[str] = 'zero_shot',
                 collect_device: str = 'cpu') -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not topk or any(int(k) < 1 for k in topk):
            raise ValueError(f'topk must be positive integers, got {topk}')
        self.topk = tuple(int(k) for k in topk)

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Keep the top ``max(topk)`` predicted classes and the label of every image."""
        max_k = max(self.topk)
        for sample in data_samples:
            if 'pred_topk' in sample:
                pred = torch.as_tensor(sample['pred_topk']).reshape(-1)[:max_k]
            else:
                logits = torch.as_tensor(sample['logits']).reshape(-1)
                pred = logits.topk(min(max_k, logits.numel())).indices
            self.results.append((pred.long().cpu().tolist(), int(sample['gt_label'])))

    def compute_metrics(self, results: List[tuple]) -> Dict[str, float]:
        """Share of images whose label is among their first k predictions, per k."""
        if not results:
            raise ValueError('ZeroShotAccuracy got no images')
        return {f'top{k}': 100.0 * sum(label in pred[:k] for pred, label in results) / len(results)
                for k in self.topk}
