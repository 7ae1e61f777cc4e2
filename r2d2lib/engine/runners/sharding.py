"""Sharding a gallery over ranks and moving its rows between ranks.

Items ``0 .. n-1`` are dealt round-robin: rank r holds items ``r, r+W, r+2W, ...``
(:func:`shard_indices`). :func:`gather_shards` puts every rank's rows back in
global order on every rank (used for the embeddings, ``[n, D]``);
:func:`fetch_rows` gives each rank only the rows it asks for, by point-to-point
sends (used for the token features that re-ranking needs: a rank fetches the
top-k candidates of its own queries, never the whole gallery). On one process
both are plain indexing.
"""
from typing import Dict, List, Sequence, Tuple

import torch
import torch.distributed as torch_dist
from mmengine.dist import all_gather, all_gather_object, get_comm_device, get_dist_info
from torch import Tensor

RowMeta = Dict[str, Tuple[Tuple[int, ...], torch.dtype]]


def shard_indices(num_items: int, rank: int, world_size: int) -> Tensor:
    """The global positions rank ``rank`` holds: ``rank, rank + W, ...`` (int64)."""
    return torch.arange(rank, num_items, world_size, dtype=torch.long)


def _common_meta(tables: Dict[str, Tensor]) -> RowMeta:
    """Row shape (the largest over ranks, per dim) and dtype of every table, agreed by all ranks."""
    local = {k: (tuple(v.shape[1:]), v.dtype, v.shape[0]) for k, v in tables.items()}
    metas = all_gather_object(local)
    common: RowMeta = {}
    for key in sorted(tables):
        shapes = [m[key][0] for m in metas if m[key][2] > 0] or [metas[0][key][0]]
        if len({len(s) for s in shapes}) != 1:
            raise RuntimeError(f'ranks hold {key!r} rows of different ranks: {shapes}')
        dtypes = {m[key][1] for m in metas if m[key][2] > 0} or {metas[0][key][1]}
        if len(dtypes) != 1:
            raise RuntimeError(f'ranks hold {key!r} rows of different dtypes: {sorted(map(str, dtypes))}')
        common[key] = (tuple(max(dims) for dims in zip(*shapes)), dtypes.pop())
    return common


def _pad_rows(rows: Tensor, shape: Tuple[int, ...]) -> Tensor:
    """Zero-pad the trailing dims of ``rows [n, ...]`` to ``shape`` (a text mask pads with 0)."""
    pad: List[int] = []
    for have, want in reversed(list(zip(rows.shape[1:], shape))):
        pad += [0, want - have]
    return torch.nn.functional.pad(rows, pad) if any(pad) else rows


def _take(table: Tensor, rows: Tensor, shape: Tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """``table[rows]`` padded to ``shape``; ``[0, *shape]`` when there are no rows."""
    if rows.numel() == 0:
        return torch.zeros((0, ) + shape, dtype=dtype)
    return _pad_rows(table[rows].cpu(), shape).to(dtype)


def gather_shards(local: Tensor, num_items: int) -> Tensor:
    """All ranks' round-robin shards of ``[n, ...]`` rows, in global order, on every rank (CPU)."""
    rank, world_size = get_dist_info()
    if world_size == 1:
        return local.cpu()
    meta = _common_meta({'rows': local})['rows']
    per_rank = -(-num_items // world_size)
    padded = local.new_zeros((per_rank, ) + meta[0], dtype=meta[1])
    if local.shape[0]:
        padded[:local.shape[0]] = _pad_rows(local, meta[0])
    pieces = [p.cpu() for p in all_gather(padded)]
    # row ``pos`` of rank r is item ``pos * W + r``: interleave the ranks
    return torch.stack(pieces, dim=1).reshape((per_rank * world_size, ) + meta[0])[:num_items]


def fetch_rows(tables: Dict[str, Tensor], wanted: Tensor, num_items: int) -> Dict[str, Tensor]:
    """Rows ``wanted`` (global positions) of round-robin sharded tables, on CPU.

    Every rank calls this with its own ``wanted``; each receives only those
    rows: memory grows with ``len(wanted)``, not with the gallery. Tables whose
    rows differ in trailing size across ranks (text lengths) are zero-padded
    to the largest.

    Args:
        tables (dict[str, Tensor]): This rank's rows of every table, row i
            being global item ``rank + i * W``.
        wanted (Tensor): ``[M]`` global positions (int64, any order).
        num_items (int): Size of the gallery (for checking ``wanted``).
    """
    wanted = wanted.long().cpu()
    if wanted.numel() and (int(wanted.min()) < 0 or int(wanted.max()) >= num_items):
        raise IndexError(f'wanted rows must lie in [0, {num_items})')
    rank, world_size = get_dist_info()
    if world_size == 1:
        return {k: v[wanted].cpu() for k, v in tables.items()}
    meta = _common_meta(tables)
    owner, position = wanted % world_size, torch.div(wanted, world_size, rounding_mode='floor')
    requests = [position[owner == peer] for peer in range(world_size)]
    all_requests: Sequence[List[Tensor]] = all_gather_object(requests)  # [asking rank][owner]
    device = get_comm_device()
    out = {k: torch.zeros((wanted.numel(), ) + shape, dtype=dtype) for k, (shape, dtype) in meta.items()}
    ops, received = [], []
    for peer in range(world_size):
        mine = owner == peer
        if peer == rank:
            for key, (shape, _) in meta.items():
                out[key][mine] = _take(tables[key], requests[rank], shape, out[key].dtype)
            continue
        for tag, (key, (shape, dtype)) in enumerate(sorted(meta.items())):
            send = _take(tables[key], all_requests[peer][rank], shape, dtype)
            ops.append(torch_dist.P2POp(torch_dist.isend, send.to(device).contiguous(), peer,
                                        tag=tag))
            recv = torch.empty((int(mine.sum()), ) + shape, dtype=dtype, device=device)
            ops.append(torch_dist.P2POp(torch_dist.irecv, recv, peer, tag=tag))
            received.append((key, mine, recv))
    if ops:
        for request in torch_dist.batch_isend_irecv(ops):
            request.wait()
    for key, mine, recv in received:
        out[key][mine] = recv.cpu()
    return out
