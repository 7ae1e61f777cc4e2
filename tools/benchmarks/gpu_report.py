"""The Markdown tables of ``benchmark.py gpu``: one per part, from the JSON lines of :mod:`gpu`."""
from typing import Iterable, List, Optional


def _num(value, digits: int = 1) -> str:
    if value is None:
        return '-'
    if isinstance(value, float):
        return f'{value:,.{digits}f}'
    return f'{value:,}' if isinstance(value, int) else str(value)


def _pct(value: Optional[float]) -> str:
    return '-' if value is None else f'{100 * value:.1f}%'


def _table(head: List[str], rows: Iterable[List[str]]) -> List[str]:
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    return lines + ['| ' + ' | '.join(row) + ' |' for row in rows]


def _status(row: dict) -> str:
    return row['status'] if row['status'] == 'ok' else f'{row["status"]}: {row.get("reason", "")}'


def markdown(header: dict, rows: List[dict]) -> str:
    """The report: the run's settings, then a table per part (train, embed, retrieval, profile)."""
    out = ['# GPU measurements (`python tools/benchmark.py gpu`)', '',
           f'Device {header["device"]}, torch {header["torch"]}, dense bf16 peak '
           f'{_num(header["bf16_peak_tflops"])} TFLOP/s ({header["peak_source"]}); tiny: {header["tiny"]}; '
           f'budget {header["budget_s"]:g} s, {header["part_limit_s"]:g} s per part; fp32 matmul precision '
           f'{header["matmul_precision"]}. MFU = FLOPs per step / s per step / (bf16 peak x 1e12), '
           'for every precision.', '']
    builds = [r for r in rows if r['part'] == 'build']
    if builds:
        out += ['## Models', ''] + _table(
            ['model', 'config', 'parameters (M)', 'GFLOPs per sample (fwd+bwd)', 'status'],
            ([r['model'], r.get('config', '-'), _num(r.get('params_m')),
              _num((r.get('flops_per_sample') or 0) / 1e9 or None, 2), _status(r)] for r in builds)) + ['']
    train = [r for r in rows if r['part'] == 'train']
    if train:
        out += ['## Pre-training step', ''] + _table(
            ['model', 'variant', 'batch', 'samples/s', 's/step', 'TFLOP/s', 'MFU', 'peak memory (GiB)',
             'status'],
            ([r['model'], r['variant'], _num(r.get('batch_size')) + ('+' if r.get('batch_capped') else ''),
              _num(r.get('samples_per_s')), _num(r.get('s_per_step'), 4), _num(r.get('achieved_tflops')),
              _pct(r.get('mfu')), _num((r.get('peak_memory_mib') or 0) / 1024 or None, 2), _status(r)]
             for r in train)) + ['', 'A batch marked + is `--max-batch`: a larger one may fit.', '']
    embed = [r for r in rows if r['part'] == 'embed']
    if embed:
        out += ['## Embedding', ''] + _table(
            ['model', 'tower', 'precision', 'batch', 'items/s', 'TFLOP/s', 'MFU', 'status'],
            ([r['model'], t['tower'], t['precision'], _num(r['batch_size']), _num(t['items_per_s']),
              _num(t['achieved_tflops']), _pct(t['mfu']), _status(r)]
             for r in embed for t in (r.get('towers') or {}).values())
        ) + [''] + [f'{r["model"]}: {_status(r)}' for r in embed if not r.get('towers')] + ['']
    for r in (r for r in rows if r['part'] == 'retrieval'):
        out += ['## Retrieval evaluation', '',
                f'{_num(r.get("images"))} images x {_num(r.get("texts"))} texts, dim {r.get("dim")}, '
                f'top {r.get("topk")}, model {r["model"]}: {_status(r)}.', '']
        done = [d for d in ('i2t', 't2i') if d in r]
        out += _table(['step', 'queries', 'gallery / pairs', 'seconds', 'per s'], (
            [f'{d} similarity + top-k', _num(r[d]['queries']), _num(r[d]['gallery']),
             _num(r[d]['seconds'], 3), _num(r[d]['queries_per_s'], 0)] for d in done))
        if 'rerank' in r:
            k = r['rerank']
            out += [f'| i2t re-rank (both cross encoders) | {_num(k["queries"])} | {_num(k["pairs"])} | '
                    f'{_num(k["seconds"], 3)} | {_num(k["pairs_per_s"], 0)} |']
        out += ['', f'R@1 i2t {r.get("i2t_R@1", "-")}, t2i {r.get("t2i_R@1", "-")} (synthetic).', '']
    for r in (r for r in rows if r['part'] == 'profile'):
        out += [f'## Profile: {r["model"]} bf16 step, batch {r.get("batch_size", "-")} '
                f'({r.get("time_kind", "")})', ''] + _table(['kernel / op', 'self ms', 'share', 'calls'], (
                    [e['name'].replace('|', '/'), _num(e['self_ms'], 2), _pct(e['share']), _num(e['calls'])]
                    for e in r.get('top', []))) + ['', _status(r), '']
    return '\n'.join(out)


def write_markdown(path: str, header: dict, rows: List[dict]) -> None:
    with open(path, 'w') as f:
        f.write(markdown(header, rows))
