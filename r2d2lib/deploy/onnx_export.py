"""Export a model's towers (and R2D2's matching head) to ONNX with dynamic batch and text length.

Three graphs, each a small wrapper module around the model's own inference methods, so the
exported computation is exactly the one PyTorch runs:

- ``image_tower.onnx``: ``pixel_values`` [B, 3, S, S] -> ``image_embeds`` [B, D] (L2-normalised)
  and ``image_tokens`` [B, 1+N, C_v] (what the cross encoders read);
- ``text_tower.onnx``: ``input_ids``, ``attention_mask`` [B, L] (int64) -> ``text_embeds`` [B, D]
  (L2-normalised) and ``text_hidden`` [B, L, H];
- ``matching.onnx`` (R2D2 models): ``image_tokens``, ``text_hidden``, ``text_mask`` -> ``match_prob`` [B],
  the mean of both cross encoders' P(matched) of pair i (:meth:`R2D2Model.match_features`).

B is dynamic everywhere and L in the text inputs; S, N and the widths are fixed by the model.
A consumer that only needs embeddings asks ORT for that output by name; the tokens cost nothing
extra (the embeddings are computed from them).

Exporter: ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript), the default since
torch 2.9. It traces the text tower with transformers' SDPA attention and its padding mask
correctly. The legacy TorchScript exporter (``dynamo=False``, still present in torch 2.15)
does not: it freezes transformers' mask handling into constants and the text embeddings of a
padded batch differ by ~0.1 from PyTorch's, so it is not offered. Examples are traced at batch 2
(torch.export specialises sizes 0 and 1) and a text length below the maximum.

Beside the graphs, ``export.json`` records the inputs, outputs, dynamic axes, opset and the
preprocessing (image size, mean/std, max text length) an ONNX consumer must reproduce, and the
tokenizer files are saved when the tokenizer can be built.
"""
from __future__ import annotations

import json
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

#: the parts :func:`export_onnx` knows, in export order
PARTS: Tuple[str, ...] = ('image', 'text', 'matching')
#: file name of each part's graph
GRAPH_FILES: Dict[str, str] = {'image': 'image_tower.onnx', 'text': 'text_tower.onnx',
                               'matching': 'matching.onnx'}
METADATA_FILE = 'export.json'
#: batch size of the export examples: torch.export specialises 0 and 1, so never 1
EXAMPLE_BATCH = 2


@dataclass
class GraphSpec:
    """Names and dynamic axes of one exported graph (written to ``export.json``)."""

    file: str
    inputs: List[str]
    outputs: List[str]
    dynamic_axes: Dict[str, Dict[int, str]] = field(default_factory=dict)


class ImageTowerForExport(nn.Module):
    """``pixel_values`` -> (L2-normalised ``image_embeds``, ``image_tokens``) of ``model``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: Tensor) -> Tuple[Tensor, Tensor]:
        tokens, embeds = self.model.image_features(pixel_values)
        return embeds, tokens


class TextTowerForExport(nn.Module):
    """(``input_ids``, ``attention_mask``) -> (L2-normalised ``text_embeds``, ``text_hidden``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tuple[Tensor, Tensor]:
        hidden, embeds = self.model.text_features(input_ids, attention_mask)
        return embeds, hidden


class MatchingForExport(nn.Module):
    """(``image_tokens``, ``text_hidden``, ``text_mask``) -> ``match_prob`` [B] of R2D2's cross encoders."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image_tokens: Tensor, text_hidden: Tensor, text_mask: Tensor) -> Tensor:
        return self.model.match_features(image_tokens, text_hidden, text_mask)


def has_matching(model: nn.Module) -> bool:
    """Whether ``model`` has cross encoders (an R2D2 model) whose matching can be exported."""
    return callable(getattr(model, 'match_features', None))


def graph_specs(parts: Sequence[str]) -> Dict[str, GraphSpec]:
    """Names and dynamic axes of the graphs of ``parts``."""
    text_axes = {0: 'batch', 1: 'text_length'}
    specs = {
        'image': GraphSpec(GRAPH_FILES['image'], ['pixel_values'], ['image_embeds', 'image_tokens'],
                           {'pixel_values': {0: 'batch'}, 'image_embeds': {0: 'batch'},
                            'image_tokens': {0: 'batch'}}),
        'text': GraphSpec(GRAPH_FILES['text'], ['input_ids', 'attention_mask'],
                          ['text_embeds', 'text_hidden'],
                          {'input_ids': text_axes, 'attention_mask': text_axes, 'text_embeds': {0: 'batch'},
                           'text_hidden': text_axes}),
        'matching': GraphSpec(GRAPH_FILES['matching'], ['image_tokens', 'text_hidden', 'text_mask'],
                              ['match_prob'],
                              {'image_tokens': {0: 'batch'}, 'text_hidden': text_axes, 'text_mask': text_axes,
                               'match_prob': {0: 'batch'}}),
    }
    return {part: specs[part] for part in parts}


def example_inputs(model: nn.Module, batch_size: int, text_length: int,
                   generator: Optional[torch.Generator] = None) -> Dict[str, Tensor]:
    """Random inputs of every graph: normal pixels, token ids of the vocabulary, ragged padding masks.

    Row i of the text has ``max(2, text_length - i)`` real tokens (then padding), so a batch mixes
    lengths; ``image_tokens`` and ``text_hidden`` come from the model's towers on these inputs.
    """
    device = next(model.parameters()).device
    size = model.image_encoder.image_size
    pixels = torch.randn(batch_size, 3, size, size, generator=generator).to(device)
    vocab = model.text_encoder.vocab_size
    ids = torch.randint(5, vocab, (batch_size, text_length), generator=generator)
    lengths = torch.tensor([max(2, text_length - i) for i in range(batch_size)]).clamp(max=text_length)
    mask = (torch.arange(text_length)[None, :] < lengths[:, None]).long()
    ids = (ids * mask).to(device)  # padding id 0, as the tokenizer pads
    mask = mask.to(device)
    with torch.no_grad():
        image_tokens = model.image_encoder(pixels)
        text_hidden = model.text_encoder(ids, mask)
    return dict(pixel_values=pixels, input_ids=ids, attention_mask=mask, image_tokens=image_tokens,
                text_hidden=text_hidden, text_mask=mask)


def export_module(model: nn.Module, part: str) -> nn.Module:
    """The module whose forward is graph ``part`` of ``model`` (exported and compared), in eval mode."""
    cls = {'image': ImageTowerForExport, 'text': TextTowerForExport, 'matching': MatchingForExport}[part]
    return cls(model).eval()


def _dynamic_shapes(spec: GraphSpec) -> tuple:
    """torch.export ``dynamic_shapes`` of the inputs of ``spec`` (one Dim object per axis name)."""
    dims: Dict[str, torch.export.Dim] = {}
    shapes = []
    for name in spec.inputs:
        axes = spec.dynamic_axes.get(name, {})
        shapes.append({axis: dims.setdefault(label, torch.export.Dim.DYNAMIC)
                       for axis, label in axes.items()})
    return tuple(shapes)


def export_part(model: nn.Module, part: str, path: Union[str, Path], text_length: int,
                opset_version: Optional[int] = None) -> GraphSpec:
    """Export one graph of ``model`` (``'image'``, ``'text'`` or ``'matching'``) to ``path``."""
    if part not in PARTS:
        raise ValueError(f'unknown ONNX part {part!r}; choose from {list(PARTS)}')
    if part == 'matching' and not has_matching(model):
        raise ValueError(f'{type(model).__name__} has no cross encoders: only R2D2 models export "matching"')
    spec = graph_specs([part])[part]
    inputs = example_inputs(model, EXAMPLE_BATCH, text_length, torch.Generator().manual_seed(0))
    args = tuple(inputs[name] for name in spec.inputs)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings('ignore', message='.*axis name.*will not be used.*')  # shared Dims renamed
        program = torch.onnx.export(export_module(model, part), args, dynamo=True, input_names=spec.inputs,
                                    output_names=spec.outputs, dynamic_shapes=_dynamic_shapes(spec),
                                    opset_version=opset_version, verbose=False)
    program.save(str(path))
    return spec


def preprocessing_info(model: nn.Module) -> dict:
    """What an ONNX consumer must reproduce before the graphs: image size, mean/std (0-255), text length."""
    preprocessor = model.data_preprocessor
    return dict(image_size=int(preprocessor.image_size),
                mean=[float(v) for v in preprocessor.mean.flatten()],
                std=[float(v) for v in preprocessor.std.flatten()],
                max_length=int(preprocessor.max_length),
                resize='bicubic, RGB, no crop; pixels = (uint8 - mean) / std')


def export_onnx(model: nn.Module, output_dir: Union[str, Path], parts: Optional[Sequence[str]] = None,
                opset_version: Optional[int] = None, save_tokenizer: bool = True) -> Dict[str, Path]:
    """Export ``model``'s graphs to ``output_dir``; returns ``{part: path of its .onnx}``.

    Args:
        model: a :class:`DualEncoderModel` or :class:`R2D2Model` (set to eval mode here).
        output_dir: created if needed; files of the same names are replaced.
        parts: subset of :data:`PARTS`; default: both towers, plus ``'matching'`` for R2D2 models.
        opset_version: ONNX opset (default: the exporter's).
        save_tokenizer: also save the tokenizer files (``tokenizer.json`` ...) so the folder is
            self-contained; a tokenizer that cannot be built (offline, not cached) is logged and skipped.
    """
    import onnx

    model.eval()
    parts = list(parts) if parts is not None else [p for p in PARTS if p != 'matching' or has_matching(model)]
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    text_length = max(2, min(8, model.data_preprocessor.max_length - 1))
    paths: Dict[str, Path] = {}
    specs: Dict[str, dict] = {}
    for part in parts:
        path = out / GRAPH_FILES[part]
        logger.info('exporting %s -> %s', part, path)
        specs[part] = asdict(export_part(model, part, path, text_length, opset_version))
        graph = onnx.load(str(path), load_external_data=False)
        specs[part]['opset'] = max(o.version for o in graph.opset_import if o.domain in ('', 'ai.onnx'))
        paths[part] = path
    metadata = dict(architecture=type(model).__name__, exporter=f'torch.onnx.export(dynamo=True), torch '
                    f'{torch.__version__}', graphs=specs, preprocessing=preprocessing_info(model))
    (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + '\n', encoding='utf-8')
    if save_tokenizer:
        try:
            model.data_preprocessor.tokenizer.save_pretrained(str(out))
        except (OSError, KeyError, RuntimeError) as error:
            logger.warning('tokenizer not saved beside the ONNX graphs: %s', error)
    return paths
