"""Val and test loops of zero-shot image classification with class-name prompts.

The dataset's ``metainfo`` gives ``classes`` (Chinese class names) and
``templates`` (prompts with ``{}``). Every (class, template) prompt is embedded
once, the prompts dealt over the ranks and the embeddings all-gathered; a
class's embedding is the renormalised mean of its prompts' (CLIP's prompt
ensembling, :func:`~r2d2lib.evaluation.ensemble_class_embeddings`). Each image
batch (sharded by the sampler) goes through the image tower; its cosine
similarities to the classes are the logits, and the top classes with the
``gt_label`` go to the evaluator (``ZeroShotAccuracy``).
"""
from typing import Dict, List, Union

import torch
from mmengine.dist import get_dist_info
from mmengine.evaluator import Evaluator
from mmengine.runner import TestLoop, ValLoop
from torch import Tensor
from torch.utils.data import DataLoader

from r2d2lib.evaluation.zero_shot import class_prompts, ensemble_class_embeddings, zero_shot_logits
from r2d2lib.registry import LOOPS

from .eval_base import EvalLoopMixin, chunks, progress, stack_images
from .sharding import gather_shards, shard_indices


def sample_label(sample) -> int:
    """``gt_label`` of a packed sample (a DataSample or a dict)."""
    value = sample.get('gt_label') if isinstance(sample, dict) else getattr(sample, 'gt_label', None)
    if value is None:
        raise KeyError('zero-shot sample has no gt_label')
    return int(torch.as_tensor(value).reshape(-1)[0])


class _ZeroShotLoopMixin(EvalLoopMixin):
    """Run logic shared by the zero-shot val and test loops."""

    evaluator: Evaluator
    max_k: int = 5

    def run(self) -> dict:
        self.require('encode_image', 'encode_text', reason='image and prompt embeddings')
        return self.run_with_hooks(self._evaluate)

    def class_embeddings(self) -> Tensor:
        """``[C, D]`` ensembled class embeddings of the dataset's classes and templates."""
        metainfo = getattr(self.dataloader.dataset, 'metainfo', {}) or {}
        for key in ('classes', 'templates'):
            if not metainfo.get(key):
                raise KeyError(f'the {self.stage} dataset\'s metainfo has no {key!r}: zero-shot '
                               'classification needs the class names and the prompt templates')
        templates = list(metainfo['templates'])
        prompts = class_prompts(list(metainfo['classes']), templates)
        rank, world_size = get_dist_info()
        mine = [prompts[i] for i in shard_indices(len(prompts), rank, world_size).tolist()]
        size = self.batch_size
        embeds = []
        for batch in progress(chunks(mine, size), desc=f'{self.stage}: embed prompts',
                              total=-(-len(mine) // size)):
            tokens = self.model.data_preprocessor.tokenize(batch)
            with self.autocast():
                embeds.append(self.model.encode_text(tokens['input_ids'],
                                                     tokens['attention_mask']).float().cpu())
        local = torch.cat(embeds) if embeds else torch.zeros(0)
        return ensemble_class_embeddings(gather_shards(local, len(prompts)), len(templates))

    def _evaluate(self) -> Dict[str, float]:
        stage, runner = self.stage, self.runner
        classes = self.class_embeddings().to(self.device)
        max_k = min(self.max_k, classes.shape[0])
        for idx, data_batch in enumerate(progress(self.dataloader, desc=f'{stage}: classify images',
                                                  total=len(self.dataloader))):
            runner.call_hook(f'before_{stage}_iter', batch_idx=idx, data_batch=data_batch)
            with self.autocast():
                embeds = self.model.encode_image(self.normalize_images(stack_images(data_batch)))
            top = zero_shot_logits(embeds, classes).topk(max_k, dim=1).indices.cpu()
            samples = data_batch['data_samples'] if isinstance(data_batch, dict) else [
                s['data_samples'] for s in data_batch]
            outputs = [dict(pred_topk=pred, gt_label=sample_label(s)) for pred, s in zip(top, samples)]
            self.evaluator.process(data_samples=outputs, data_batch=data_batch)
            runner.call_hook(f'after_{stage}_iter', batch_idx=idx, data_batch=data_batch,
                             outputs=outputs)
        return self.evaluator.evaluate(len(self.dataloader.dataset))

    def _set_max_k(self) -> None:
        self.max_k = max((k for m in self.evaluator.metrics for k in getattr(m, 'topk', ())), default=5)


@LOOPS.register_module()
class ZeroShotValLoop(_ZeroShotLoopMixin, ValLoop):
    """Validation loop of zero-shot classification -> ``ZeroShotAccuracy``.

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader or dict): Images with ``gt_label``; the dataset's metainfo has
            ``classes`` and ``templates``.
        evaluator (Evaluator or dict or list): Usually ``ZeroShotAccuracy``.
        fp16 (bool): Autocast to float16 (CUDA only; ignored on CPU).
    """

    stage = 'val'

    def __init__(self, runner, dataloader: Union[DataLoader, Dict],
                 evaluator: Union[Evaluator, Dict, List], fp16: bool = False) -> None:
        super().__init__(runner, dataloader, evaluator, fp16=fp16)
        self._set_max_k()


@LOOPS.register_module()
class ZeroShotTestLoop(_ZeroShotLoopMixin, TestLoop):
    """Test loop: :class:`ZeroShotValLoop` calling the ``test_*`` hooks."""

    stage = 'test'

    def __init__(self, runner, dataloader: Union[DataLoader, Dict],
                 evaluator: Union[Evaluator, Dict, List], fp16: bool = False) -> None:
        super().__init__(runner, dataloader, evaluator, fp16=fp16)
        self._set_max_k()
