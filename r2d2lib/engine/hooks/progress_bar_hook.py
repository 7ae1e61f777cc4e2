"""A progress bar over training iterations, with the current losses."""
import logging
import sys

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from tqdm import tqdm

from r2d2lib.registry import HOOKS


class _AboveTheBar:
    """A console stream whose writes go through ``tqdm.write``: the bar is cleared, the text written
    and the bar redrawn below it, so a log line never lands on the bar's line."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        tqdm.write(text, file=self.stream, end='')

    def flush(self) -> None:
        self.stream.flush()


@HOOKS.register_module()
class ProgressBarHook(Hook):
    """Show a tqdm bar over all training iterations (main process only) with the losses.

    While the bar is shown, the runner's console log lines are written above it, each on its own line.

    Args:
        interval: refresh the losses shown every this many iterations.
    """

    priority = 'BELOW_NORMAL'

    def __init__(self, interval: int = 10):
        self.interval = interval
        self.bar = None
        self._consoles = []  # (handler, its own stream) while the bar is shown

    def before_train(self, runner) -> None:
        if is_main_process():
            # redraw twice a second on a terminal, every 30 s into a log file
            self.bar = tqdm(total=runner.max_iters, initial=runner.iter, desc='train', unit='it',
                            dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30)
            for handler in runner.logger.handlers:
                if type(handler) is logging.StreamHandler:  # the console, not the log file
                    self._consoles.append((handler, handler.setStream(_AboveTheBar(handler.stream))))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        if outputs and self.every_n_train_iters(runner, self.interval):
            self.bar.set_postfix({k: f'{float(torch.as_tensor(v).detach()):.3f}' for k, v in outputs.items()},
                                 refresh=False)

    def after_train(self, runner) -> None:
        for handler, stream in self._consoles:
            handler.setStream(stream)
        self._consoles = []
        if self.bar is not None:
            self.bar.close()
            self.bar = None
