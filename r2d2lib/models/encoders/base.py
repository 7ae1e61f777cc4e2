"""Shared base of the encoders: freezing, lazy pretrained loading (strict, by r2d2lib.io.checkpoint).

Every encoder builds its architecture from a config alone (no file, no network) and
loads pretrained weights only in :meth:`BaseEncoder.init_weights`, which mmengine's
Runner calls at the start of training. Loading is strict: a missing, unexpected or
wrong-shaped key raises :class:`PretrainedLoadError` naming it and the source, except
keys deliberately dropped by name (modules the encoder removed because it never uses
them).
"""
import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import nn

from r2d2lib.io.checkpoint import PretrainedLoadError, check_state_dict_keys, load_state_dict_strict

__all__ = ['BaseEncoder', 'load_hf_pretrained', 'quiet_transformers']


class BaseEncoder(BaseModule):
    """Base of image and text encoders: the ``frozen`` and ``gradient_checkpointing`` switches.

    ``frozen=True`` (the R2D2 paper freezes its ViT) makes every parameter
    ``requires_grad=False``, keeps the encoder in eval mode whatever ``train()`` a
    parent calls, and subclasses run ``forward`` through :meth:`run_frozen`: under
    ``torch.inference_mode()`` (no autograd bookkeeping at all), the output then
    cloned out of inference mode so that trainable layers can consume it (under
    ``torch.compile``, which does not trace inference mode, ``torch.no_grad()``).

    ``gradient_checkpointing=True`` recomputes each transformer layer's activations
    in the backward pass instead of storing them (less memory, about one more
    forward of compute); subclasses switch their model's own mechanism on in
    :meth:`_enable_gradient_checkpointing`.

    Subclasses build their module, call :meth:`_finish_build` at the end of
    ``__init__`` and implement :meth:`load_pretrained`, which :meth:`init_weights`
    calls (never the constructor: building must not read files or the network).

    Args:
        frozen: freeze the encoder.
        gradient_checkpointing: checkpoint every transformer layer in training.
        init_cfg: mmengine initialisation config.
    """

    def __init__(self, frozen: bool = False, gradient_checkpointing: bool = False,
                 init_cfg: dict | list[dict] | None = None):
        super().__init__(init_cfg=init_cfg)
        self.frozen = frozen
        self.gradient_checkpointing = gradient_checkpointing

    def _finish_build(self) -> None:
        """Switch on gradient checkpointing if asked, then freeze if asked."""
        if self.gradient_checkpointing:
            self._enable_gradient_checkpointing()
        self._apply_frozen()

    def _enable_gradient_checkpointing(self) -> None:
        """Turn on the wrapped model's gradient checkpointing (overridden by subclasses)."""
        raise NotImplementedError(f'{type(self).__name__} does not support gradient_checkpointing')

    def _apply_frozen(self) -> None:
        """Disable gradients and switch to eval mode if the encoder is frozen."""
        if self.frozen:
            for param in self.parameters():
                param.requires_grad_(False)
            nn.Module.train(self, False)

    def train(self, mode: bool = True) -> 'BaseEncoder':
        """Set training mode; a frozen encoder stays in eval mode."""
        return super().train(mode and not getattr(self, 'frozen', False))

    def grad_context(self) -> contextlib.AbstractContextManager:
        """``torch.no_grad()`` if frozen, else a no-op context."""
        return torch.no_grad() if self.frozen else contextlib.nullcontext()

    def run_frozen(self, forward: Callable[..., torch.Tensor], *args: Any, **kwargs: Any) -> torch.Tensor:
        """``forward(*args, **kwargs)``; for a frozen encoder under inference mode (see the class doc)."""
        if not self.frozen:
            return forward(*args, **kwargs)
        if torch.compiler.is_compiling():
            with torch.no_grad():
                return forward(*args, **kwargs)
        with torch.inference_mode():
            output = forward(*args, **kwargs)
        return output.clone()  # a normal tensor (an inference tensor cannot be saved for backward)

    def load_pretrained(self) -> None:
        """Load the pretrained weights, if any, strictly (overridden by subclasses)."""

    def init_weights(self) -> None:
        """mmengine init (``init_cfg``, wrapped modules), then pretrained weights, then freeze."""
        super().init_weights()
        self.load_pretrained()
        self._apply_frozen()


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' loading report and progress bars; we report ourselves."""
    from transformers.utils import logging as hf_logging
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_hf_pretrained(target: nn.Module, model_cls: type, source: str,
                       ignore_prefixes: Sequence[str] = (),
                       same_config: Sequence[str] = (), **kwargs: Any) -> None:
    """Strictly load a transformers checkpoint (local dir or hub id) into ``target``.

    ``model_cls.from_pretrained`` resolves the files (honouring ``HF_HUB_OFFLINE``
    and the cache) and converts legacy key names; its loading info and then the
    copy into ``target`` are checked key by key, dropping ``ignore_prefixes``.
    Config fields named in ``same_config`` (those shapes cannot reveal, like the
    activation) must agree between the checkpoint and ``target.config``.
    """
    dtype = next(target.parameters()).dtype
    with quiet_transformers():
        loaded, info = model_cls.from_pretrained(
            source, output_loading_info=True, ignore_mismatched_sizes=True, dtype=dtype,
            **kwargs)
    dropped = set(check_state_dict_keys(info['missing_keys'], info['unexpected_keys'], source,
                                        ignore_prefixes, mismatched=info['mismatched_keys']))
    differ = [f'{name}: checkpoint {getattr(loaded.config, name, None)!r} vs model '
              f'{getattr(target.config, name, None)!r}' for name in same_config
              if getattr(loaded.config, name, None) != getattr(target.config, name, None)]
    if differ:
        raise PretrainedLoadError(f'Config of {source!r} does not match the encoder: '
                                  + '; '.join(differ))
    dropped.update(load_state_dict_strict(target, loaded.state_dict(), source, ignore_prefixes))
    print_log(f'Loaded {type(target).__name__} weights from {source!r}; dropped '
              f'{len(dropped)} unused keys by name ({", ".join(ignore_prefixes)}).',
              logger='current')
