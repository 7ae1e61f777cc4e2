"""What the retrieval, matching and zero-shot loops share: model access, hooks, image batches."""
import contextlib
import time
from typing import Any, Callable, ContextManager, Dict, Iterator, List, Sequence

import torch
from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm


def stack_images(batch: Any) -> Tensor:
    """The ``inputs`` of packed samples (``PackInputs``) or of a collated batch as one ``[B, 3, H, W]``."""
    if isinstance(batch, dict):
        images = batch['inputs']
    else:
        images = [sample['inputs'] for sample in batch]
    if isinstance(images, Tensor):
        return images
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) > 1:
        raise ValueError(f'images of one batch differ in size ({sorted(shapes)}): the test pipeline '
                         'must resize them to the model\'s input size')
    return torch.stack(list(images))


class _PackedImages(Dataset):
    """The packed image (``inputs``) of chosen records of a dataset, through its own pipeline."""

    def __init__(self, dataset: Dataset, record_indices: Sequence[int]) -> None:
        self.dataset, self.record_indices = dataset, [int(i) for i in record_indices]

    def __len__(self) -> int:
        return len(self.record_indices)

    def __getitem__(self, idx: int) -> Dict[str, Tensor]:
        sample = self.dataset[self.record_indices[idx]]
        if sample is None:
            raise RuntimeError(f'record {self.record_indices[idx]} of {type(self.dataset).__name__} '
                               'gave no sample (unreadable image?)')
        return dict(inputs=sample['inputs'])


class EvalLoopMixin:
    """Run skeleton and helpers of the evaluation loops (``stage`` is ``'val'`` or ``'test'``)."""

    stage: str = 'val'
    runner: Any
    dataloader: DataLoader
    fp16: bool = False

    @property
    def model(self) -> nn.Module:
        """The model itself (unwrapped from DDP)."""
        model = self.runner.model
        return model.module if is_model_wrapper(model) else model

    @property
    def device(self) -> torch.device:
        param = next(self.model.parameters(), None)
        return param.device if param is not None else torch.device('cpu')

    def autocast(self) -> ContextManager:
        """float16 autocast on CUDA when ``fp16``; nothing on CPU."""
        if self.fp16 and self.device.type == 'cuda':
            return torch.autocast('cuda', dtype=torch.float16)
        return contextlib.nullcontext()

    @property
    def batch_size(self) -> int:
        return int(getattr(self.dataloader, 'batch_size', None) or 64)

    def require(self, *methods: str, reason: str) -> None:
        """Fail before any work if the model lacks a method the loop calls."""
        missing = [m for m in methods if not callable(getattr(self.model, m, None))]
        if missing:
            raise TypeError(f'{type(self).__name__} needs model.{", model.".join(missing)} ({reason}); '
                            f'{type(self.model).__name__} has none')

    def normalize_images(self, images: Tensor) -> Tensor:
        """uint8 ``[B, 3, H, W]`` -> model input, by the model's data preprocessor."""
        preprocessor = getattr(self.model, 'data_preprocessor', None)
        if not callable(getattr(preprocessor, 'normalize', None)):
            raise TypeError(f'{type(self).__name__} needs model.data_preprocessor.normalize(images); '
                            f'{type(preprocessor).__name__} has none')
        return preprocessor.normalize(images.to(self.device))

    def image_batches(self, dataset: Dataset, record_indices: Sequence[int],
                      desc: str) -> Iterator[Tensor]:
        """uint8 image batches of the given records, loaded by the dataset's pipeline."""
        loader = DataLoader(_PackedImages(dataset, record_indices), batch_size=self.batch_size,
                            num_workers=int(getattr(self.dataloader, 'num_workers', 0)),
                            collate_fn=stack_images, shuffle=False)
        yield from progress(loader, desc=desc, total=len(loader))

    def run_with_hooks(self, evaluate: Callable[[], Dict[str, float]]) -> Dict[str, float]:
        """``before_<stage>``, ``before_<stage>_epoch``, ``evaluate()``, then the after hooks."""
        stage, runner = self.stage, self.runner
        runner.call_hook(f'before_{stage}')
        runner.call_hook(f'before_{stage}_epoch')
        runner.model.eval()
        start = time.perf_counter()
        with torch.no_grad():
            metrics = evaluate()
        print_log(f'{type(self).__name__}: {time.perf_counter() - start:.1f} s, ' +
                  ', '.join(f'{k}: {v:.2f}' for k, v in metrics.items()), logger='current')
        runner.call_hook(f'after_{stage}_epoch', metrics=metrics)
        runner.call_hook(f'after_{stage}')
        return metrics


def progress(iterable, desc: str, total: int) -> Iterator:
    """tqdm over ``iterable`` on the main process only."""
    return iter(tqdm(iterable, desc=desc, total=total, disable=not is_main_process(),
                     dynamic_ncols=True, leave=False))


def chunks(items: List, size: int) -> Iterator[List]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
