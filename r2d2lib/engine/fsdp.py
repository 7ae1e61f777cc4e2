"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for :class:`~r2d2lib.engine.StrictRunner`: which modules
are sharded, full state dicts in and out of a sharded model, evaluation on unsharded parameters.

Switched on by the config key ``fsdp`` (a dict, ``None`` = off; ``tools/train.py --fsdp``); see
docs/distributed.md for what is sharded and what is not.
"""
from __future__ import annotations

import contextlib
import re
from typing import Any, Dict, Iterator, List, Optional, Sequence

import torch
import torch.distributed as dist
from mmengine.hooks import Hook
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

# The transformer blocks of the encoders r2d2lib builds: transformers' CLIP vision and BERT layers,
# r2d2lib's cross-encoder layer, timm's ViT block.
DEFAULT_LAYER_CLASSES = ('CLIPEncoderLayer', 'BertLayer', 'CrossEncoderLayer', 'Block')
DEFAULTS = dict(layer_classes=DEFAULT_LAYER_CLASSES, reshard_after_forward=True, param_dtype=None,
                reduce_dtype=None)
DTYPES = {None: None, 'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}


def fsdp_options(cfg: Optional[dict]) -> Dict[str, Any]:
    """The config's ``fsdp`` dict with defaults filled in; unknown keys and dtypes are refused by name."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ValueError(f'config key fsdp has unknown keys {unknown}; known: {sorted(DEFAULTS)}')
    options = {**DEFAULTS, **cfg}
    for key in ('param_dtype', 'reduce_dtype'):
        if options[key] not in DTYPES:
            raise ValueError(f'fsdp.{key} must be one of {sorted(k for k in DTYPES if k)} or None, '
                             f'got {options[key]!r}')
    if isinstance(options['layer_classes'], str) or not options['layer_classes']:
        raise ValueError(f"fsdp.layer_classes must be a non-empty list of class names, "
                         f"got {options['layer_classes']!r}")
    return options


def shard_plan(model: nn.Module, layer_classes: Sequence[str] = DEFAULT_LAYER_CLASSES) -> List[str]:
    """Names of the modules that get their own FSDP unit, children before parents, ending with ``''`` (the
    root, which takes every parameter left over). A unit is every module whose class name is listed.

    Raises ``ValueError`` naming ``fsdp.layer_classes`` when no module of ``model`` matches.
    """
    names = [name for name, module in model.named_modules() if type(module).__name__ in set(layer_classes)]
    if not names:
        raise ValueError(f'fsdp.layer_classes {list(layer_classes)} matches no module of '
                         f'{type(model).__name__}: name its transformer block classes')
    return names[::-1] + ['']


def shard_model(model: nn.Module, cfg: Optional[dict], device_type: str,
                src_rank: Optional[int] = 0) -> nn.Module:
    """``fully_shard`` every unit of :func:`shard_plan`, in place, over all ranks of the default group.

    Every rank starts from rank ``src_rank``'s weights and buffers (as under DDP, whose wrapper broadcasts
    rank 0's): each rank's own full values are replaced by that rank's shards after sharding. ``None``
    keeps each rank's own values (a model on the meta device, which has none).

    Scalar (0-d) parameters, which ``fully_shard`` refuses (the temperature ``temperature.temp``), are left
    out of every unit: replicated on every rank, their gradients averaged over the ranks by a hook, as DDP
    does (:func:`replicate_gradients`).
    """
    options = fsdp_options(cfg)
    mesh = init_device_mesh(device_type, (dist.get_world_size(),))
    policy = MixedPrecisionPolicy(param_dtype=DTYPES[options['param_dtype']],
                                  reduce_dtype=DTYPES[options['reduce_dtype']])
    full = dict(model.state_dict())  # this rank's values, kept while fully_shard replaces the parameters
    modules = dict(model.named_modules())
    scalars = {param for param in model.parameters() if param.dim() == 0}
    for name in shard_plan(model, options['layer_classes']):
        fully_shard(modules[name], mesh=mesh, mp_policy=policy, ignored_params=scalars,
                    reshard_after_forward=options['reshard_after_forward'] if name else False)
    for param in scalars:  # fully_shard does not move what it ignores (nor a meta model's)
        if not param.is_meta:
            param.data = param.data.to(mesh.device_type)
    replicate_gradients([param for param in scalars if param.requires_grad])
    if src_rank is not None:
        load_full_state(model, full, src_rank=src_rank)
    return model


def replicate_gradients(params: Sequence[nn.Parameter]) -> None:
    """Average each parameter's gradient over the ranks as soon as backward has accumulated it (DDP's
    all-reduce for the parameters FSDP leaves out); every rank's graph uses them in the same order."""
    def average(param: nn.Parameter) -> None:
        dist.all_reduce(param.grad)
        param.grad.div_(dist.get_world_size())

    for param in params:
        param.register_post_accumulate_grad_hook(average)


def shard_summary(model: nn.Module) -> str:
    """One line: FSDP units, and the parameter elements this rank holds of the model's total."""
    units = sum(isinstance(m, FSDPModule) for m in model.modules())
    local = sum((p.to_local() if isinstance(p, DTensor) else p).numel() for p in model.parameters())
    total = sum(p.numel() for p in model.parameters())
    return (f'FSDP2: {units} units over {dist.get_world_size()} ranks; this rank holds {local:,} of the '
            f'{total:,} parameter elements')


def is_sharded(model: nn.Module) -> bool:
    return isinstance(model, FSDPModule)


def sharded_state(model: nn.Module, state_dict: Dict[str, torch.Tensor],
                  src_rank: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """A full state dict (a checkpoint's) cut into ``model``'s shards: an entry whose parameter is a DTensor
    becomes a DTensor of the same placement; other entries (buffers, unknown keys) are kept as they are.

    ``src_rank=None``: every rank cuts its own copy (no communication, every rank read the same file);
    ``src_rank=0``: rank 0's values are scattered and its buffers broadcast (a collective on every rank).
    """
    own = model.state_dict()
    out = {}
    for key, value in state_dict.items():
        target = own.get(key)
        if isinstance(target, DTensor) and torch.is_tensor(value) and not isinstance(value, DTensor):
            value = distribute_tensor(value.detach().to(target.device, target.dtype), target.device_mesh,
                                      target.placements, src_data_rank=src_rank)
        elif src_rank is not None and torch.is_tensor(target) and torch.is_tensor(value):
            value = value.detach().to(target.device).clone()
            dist.broadcast(value, src_rank)
        out[key] = value
    return out


@torch.no_grad()
def load_full_state(model: nn.Module, state_dict: Dict[str, torch.Tensor], src_rank: Optional[int] = None):
    """Copy a full state dict into a sharded ``model`` strictly (see :func:`sharded_state`)."""
    return model.load_state_dict(sharded_state(model, state_dict, src_rank), strict=True)


def full_state(obj: Any) -> Any:
    """``obj`` (a state dict, nested dicts and lists) with every DTensor gathered into a full CPU tensor.

    A collective: every rank must call it, on structures with the same keys in the same order.
    """
    if isinstance(obj, DTensor):
        return obj.full_tensor().cpu()
    if isinstance(obj, dict):
        return type(obj)((key, full_state(value)) for key, value in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(full_state(value) for value in obj)
    return obj


def shard_optimizer_state(optimizer: torch.optim.Optimizer, state_dict: dict) -> dict:
    """A full optimizer state dict (``Optimizer.state_dict()`` layout, integer ids) with every per-parameter
    tensor of a parameter's shape cut into that parameter's shards (``step`` and scalars stay)."""
    if not isinstance(state_dict, dict) or 'state' not in state_dict:
        return state_dict
    params = [p for group in optimizer.param_groups for p in group['params']]
    state = {}
    for idx, entry in state_dict['state'].items():
        param = params[int(idx)]
        if isinstance(param, DTensor):
            entry = {name: distribute_tensor(value.to(param.device, value.dtype), param.device_mesh,
                                             param.placements, src_data_rank=None)
                     if torch.is_tensor(value) and value.shape == param.shape else value
                     for name, value in entry.items()}
        state[idx] = entry
    return dict(state_dict, state=state)


def revised(state_dict: Dict[str, Any], revise_keys: Sequence) -> Dict[str, Any]:
    """``state_dict`` with mmengine's ``revise_keys`` (pattern, replacement) applied to its keys."""
    for pattern, replacement in revise_keys:
        state_dict = type(state_dict)((re.sub(pattern, replacement, k), v) for k, v in state_dict.items())
    return state_dict


@contextlib.contextmanager
def unsharded(model: nn.Module) -> Iterator[None]:
    """Every FSDP unit of ``model`` all-gathered, and kept so through forwards, for the duration.

    The evaluation loops call the model's methods (``image_features``, ``match_features``) on shards of
    the data that differ in size between ranks, so they cannot all-gather per layer as training does.
    Costs the full parameters on every rank while it lasts (no gradients, no optimizer state).
    """
    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    groups = [group for unit in units for group in unit._get_fsdp_state()._fsdp_param_groups]
    saved = [group.post_forward_mesh_info for group in groups]  # restored as they were (private API)
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
        unit.unshard()
    try:
        yield
    finally:
        for unit in units:
            unit.reshard()
        for group, info in zip(groups, saved):
            group.post_forward_mesh_info = info


class UnshardForEvalHook(Hook):
    """Run the validation and test loops of a sharded model under :func:`unsharded` (StrictRunner adds it)."""

    priority = 'VERY_HIGH'

    def __init__(self):
        self._context: Optional[contextlib.ExitStack] = None

    def _enter(self, runner) -> None:
        self._context = contextlib.ExitStack()
        self._context.enter_context(unsharded(runner.model))

    def _exit(self, runner) -> None:
        if self._context is not None:
            self._context.close()
            self._context = None

    before_val = before_test = _enter
    after_val = after_test = _exit
