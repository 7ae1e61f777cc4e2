"""The README.md model card of an exported model, rendered from its config.json and zoo metadata."""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional

TAGS = ('r2d2lib', 'vision-language', 'chinese', 'image-text-retrieval')

# Config keys shown in the architecture table when an encoder config sets them.
_SHAPE_KEYS = ('model_name', 'hidden_size', 'width', 'kv_width', 'num_hidden_layers', 'num_layers',
               'depth', 'num_attention_heads', 'num_heads', 'intermediate_size', 'image_size',
               'img_size', 'patch_size', 'vocab_size', 'max_position_embeddings', 'frozen')

# Training-only parts of a model left out of every export (see r2d2lib.io.pretrained).
LEFT_OUT = (
    'the training objective (`objective.*`: the losses, the momentum teacher, the feature queues, the FgD '
    'centres, the MLM head and the loss weights): `config.json` describes the architecture only, and '
    'fine-tuning adds an objective in its training config',
)


def _summary(cfg: Optional[dict]) -> str:
    """``Type (key=value, ...)`` of a component config, with its shape-defining keys."""
    if not cfg:
        return '-'
    flat = {**(cfg.get('config') or {}), **{k: v for k, v in cfg.items() if k != 'config'}}
    shown = ', '.join(f'{k}={flat[k]}' for k in _SHAPE_KEYS if k in flat)
    return f"`{cfg.get('type', '?')}`" + (f' ({shown})' if shown else ' (its default size)')


def _cell(value: Any) -> str:
    return str(value).replace('|', '\\|').replace('\n', ' ')


def _table(rows: Iterable[Dict[str, Any]]) -> List[str]:
    """A markdown table whose columns are the keys of the rows in order of first appearance."""
    rows = list(rows)
    columns: List[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    lines = ['| ' + ' | '.join(map(_cell, columns)) + ' |', '|' + '---|' * len(columns)]
    lines += ['| ' + ' | '.join(_cell(row.get(c, '')) for c in columns) + ' |' for row in rows]
    return lines


def _paper(paper: Any) -> str:
    if isinstance(paper, dict):
        title, url = paper.get('title', paper.get('url', '')), paper.get('url')
        return f'[{title}]({url})' if url else str(title)
    return str(paper)


def render_model_card(config: Dict[str, Any], metadata: Optional[Dict[str, Any]] = None) -> str:
    """README.md text: Hub metadata (YAML front matter), architecture, preprocessing, usage, results.

    A pure function of the exported ``config.json`` content and optional model-zoo
    ``metadata``, whose keys are all optional: ``title``, ``description``, ``paper``
    (text or ``dict(title, url)``), ``datasets`` (names), ``results`` (table rows,
    dicts with the same keys, e.g. ``dataset``, ``task``, ``metric``, ``value``),
    ``citation`` (BibTeX), ``repo_id`` (used in the usage snippet), ``num_parameters``,
    ``converted_from`` (the file converted weights come from) and ``license`` (a Hub license id;
    default ``other``, i.e. not stated, for converted weights, else ``apache-2.0``, r2d2lib's).
    """
    meta = dict(metadata or {})
    arch, model = config['architecture'], config['model']
    pre = config.get('preprocessing', {})
    is_r2d2 = 'text_image_encoder' in model
    name = meta.get('repo_id') or 'path/to/folder-or-org/name'
    license_id = meta.get('license') or ('other' if meta.get('converted_from') else 'apache-2.0')
    lines = ['---', f'license: {license_id}', 'library_name: r2d2lib', 'tags:']
    lines += [f'- {tag}' for tag in TAGS] + ['---', '', f"# {meta.get('title') or f'{arch} (r2d2lib)'}", '']
    if meta.get('description'):
        lines += [meta['description'], '']
    if meta.get('paper'):
        lines += [f"Paper: {_paper(meta['paper'])}", '']
    if meta.get('converted_from'):
        lines += [f"Weights converted from `{meta['converted_from']}`.", '']
    if license_id == 'other':
        lines += ['License: not stated by the source of these weights (`license: other`); check its terms '
                  'before use.', '']
    version = f" {config['r2d2lib_version']}" if config.get('r2d2lib_version') else ''
    lines += [f'An `{arch}` exported by r2d2lib{version} for inference: retrieval embeddings'
              + (' and image-text matching.' if is_r2d2 else '.'), '']
    rows = [('Image encoder', _summary(model.get('image_encoder'))),
            ('Text encoder', _summary(model.get('text_encoder')))]
    if is_r2d2:
        rows += [('Text-image cross encoder', _summary(model.get('text_image_encoder'))),
                 ('Image-text cross encoder', _summary(model.get('image_text_encoder')))]
    rows.append(('Embedding', f"{model.get('embed_dim', 768)}-d, L2-normalised"))
    if meta.get('num_parameters'):
        rows.append(('Parameters', f"{meta['num_parameters'] / 1e6:.1f} M"))
    lines += ['## Architecture', '', '| Part | |', '|---|---|']
    lines += [f'| {part} | {_cell(text)} |' for part, text in rows]
    lines += ['', 'The complete configuration is `model` in `config.json`.', '',
              '## Preprocessing', '',
              f"- Images: RGB, resized (not cropped) to {pre.get('image_size')} x {pre.get('image_size')} "
              f"pixels (bicubic), scaled to [0, 1] and normalised with mean {pre.get('mean')} and std "
              f"{pre.get('std')}.",
              f"- Texts: the tokenizer in this repository, padded / truncated to {pre.get('max_length')} "
              'tokens ([CLS] and [SEP] included).', '',
              '## Usage', '', '```python', 'import torch', 'from PIL import Image', '',
              f'from r2d2lib import {arch}', '',
              f"model = {arch}.from_pretrained('{name}')  # eval mode; device=, dtype= optional",
              "pixels = model.preprocess([Image.open('image.jpg')])",
              "tokens = model.tokenize(['一只在草地上奔跑的小狗', '一碗牛肉面'])",
              'with torch.no_grad():',
              '    image_emb = model.encode_image(pixels)       # [1, D], L2-normalised',
              '    text_emb = model.encode_text(**tokens)       # [2, D]',
              '    similarity = image_emb @ text_emb.t()        # [1, 2] cosine similarities']
    if is_r2d2:
        lines += ['    prob = model.match(pixels.expand(2, -1, -1, -1), **tokens)  # [2] P(image i matches '
                  'text i)']
    lines += ['```', '']
    if meta.get('results'):
        lines += ['## Results', ''] + _table(meta['results']) + ['']
    if meta.get('datasets'):
        lines += ['## Training data', ''] + [f'- {d}' for d in meta['datasets']] + ['']
    lines += ['## Left out of this export', ''] + [f'- {item}' for item in LEFT_OUT] + ['']
    if meta.get('citation'):
        lines += ['## Citation', '', '```bibtex', meta['citation'].strip(), '```', '']
    return '\n'.join(lines)
