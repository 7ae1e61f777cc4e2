"""Shared pieces of the benchmarks: synthetic inputs and tokenizer, model building, memory.

Every benchmark runs offline on synthetic inputs with random weights: no data set, no
download. A Hub tokenizer in a config is replaced by a local vocabulary with
chinese-roberta-wwm-ext's special ids (see :func:`use_local_tokenizer`).
"""
import argparse
import ctypes
import ctypes.util
import json
import os
import os.path as osp
import resource
import sys
from typing import Dict, Optional

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import r2d2lib  # noqa: F401  (registers the components)
from r2d2lib.registry import MODELS

MIB = 2 ** 20
# chinese-roberta-wwm-ext's special tokens: [PAD] 0, [unused1-99], [UNK] 100, [CLS] 101, [SEP] 102,
# [MASK] 103; its ordinary tokens start after further reserved slots, at 999 here.
BERT_SPECIAL_IDS = {'[PAD]': 0, '[UNK]': 100, '[CLS]': 101, '[SEP]': 102, '[MASK]': 103}
FIRST_ORDINARY_ID = 999


# ----------------------------------------------------------------- tokenizer and inputs
def write_bert_vocab(path: str, vocab_size: int) -> None:
    """A WordPiece vocabulary of ``vocab_size`` tokens with chinese-roberta-wwm-ext's special ids."""
    if vocab_size <= FIRST_ORDINARY_ID:
        raise ValueError(f'vocab_size must exceed {FIRST_ORDINARY_ID}, got {vocab_size}')
    tokens = [f'[unused{i}]' for i in range(FIRST_ORDINARY_ID)]
    for token, index in BERT_SPECIAL_IDS.items():
        tokens[index] = token
    cjk = 0x9FFF - 0x4E00 + 1  # one CJK character per token while they last
    tokens += [chr(0x4E00 + i) if i < cjk else f'##x{i}' for i in range(vocab_size - FIRST_ORDINARY_ID)]
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(tokens) + '\n')


def use_local_tokenizer(cfg: Config, tmp_dir: str) -> Optional[str]:
    """Replace a Hub tokenizer in ``cfg.model`` by a local vocabulary file; returns what was replaced.

    A ``vocab_file`` tokenizer, or a ``name_or_path`` naming an existing folder, is kept (None).
    """
    preprocessor = cfg.model.setdefault('data_preprocessor', dict(type='ImageTextDataPreprocessor'))
    tokenizer = dict(preprocessor.get('tokenizer') or dict(name_or_path='hfl/chinese-roberta-wwm-ext'))
    if 'vocab_file' in tokenizer:
        if not osp.isfile(str(tokenizer['vocab_file'])):
            raise FileNotFoundError(
                f'the config\'s tokenizer vocab_file {tokenizer["vocab_file"]!r} does not exist (the '
                'demo configs need the toy corpus: run tools/demo.py, or pass --cfg-options '
                'model.data_preprocessor.tokenizer.vocab_file=PATH)')
        return None
    name = str(tokenizer.get('name_or_path'))
    if osp.isdir(name):
        return None
    vocab_size = cfg.model.get('text_encoder', {}).get('config', {}).get('vocab_size', 21128)
    vocab_file = osp.join(tmp_dir, 'vocab.txt')
    write_bert_vocab(vocab_file, vocab_size)
    preprocessor['tokenizer'] = dict(vocab_file=vocab_file)
    return f'{name} -> synthetic {vocab_size}-token vocabulary ({vocab_file})'


def first_ordinary_id(tokenizer, vocab_size: int) -> int:
    """The first id after the special tokens that is not an ``[unused]`` slot."""
    start = max(tokenizer.all_special_ids) + 1
    tokens = tokenizer.convert_ids_to_tokens(list(range(start, vocab_size)))
    for index, token in enumerate(tokens, start):
        if not token.startswith('[unused'):
            return index
    raise ValueError(f'the tokenizer has no ordinary token below id {vocab_size}')


def synthetic_inputs(model, batch_size: int, step: int, generator: torch.Generator,
                     device: torch.device) -> dict:
    """Preprocessed inputs of one batch: random pixels, random texts with padding, unique ids."""
    preprocessor = model.data_preprocessor
    tokenizer = preprocessor.tokenizer
    size, length = preprocessor.image_size, preprocessor.max_length
    vocab = min(len(tokenizer), model.text_encoder.vocab_size)
    low = first_ordinary_id(tokenizer, vocab)
    shortest = max(3, length // 2)
    lengths = torch.randint(shortest, length + 1, (batch_size,), generator=generator)
    lengths[-1] = shortest  # at least one padded text
    input_ids = torch.full((batch_size, length), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros(batch_size, length, dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        input_ids[i, 0], input_ids[i, n - 1] = tokenizer.cls_token_id, tokenizer.sep_token_id
        input_ids[i, 1:n - 1] = torch.randint(low, vocab, (n - 2,), generator=generator)
        attention_mask[i, :n] = 1
    ids = torch.arange(batch_size) + step * batch_size
    inputs = dict(images=torch.randn(batch_size, 3, size, size, generator=generator),
                  input_ids=input_ids, attention_mask=attention_mask, image_ids=ids, text_ids=ids.clone())
    return {key: value.to(device) for key, value in inputs.items()}


@torch.no_grad()
def fill_queue(model, batch_size: int, generator: torch.Generator) -> int:
    """Fill the feature queue as after a full cycle of training (its steady state); the slots filled.

    Random unit features, image ids no batch uses, weights decayed per batch of age.
    """
    queue = getattr(model, 'queue', None)
    if queue is None:  # the model's training objective holds it (issue 14)
        queue = getattr(getattr(model, 'objective', None), 'queue', None)
    if queue is None:
        return 0
    size, dim = queue.image_feats.shape
    for feats in (queue.image_feats, queue.text_feats):
        feats.copy_(torch.nn.functional.normalize(torch.randn(size, dim, generator=generator), dim=-1))
    queue.image_ids.copy_((1 << 40) + torch.arange(size))
    age = (size - 1 - torch.arange(size)) // batch_size  # slot size-1 written last, the pointer at 0
    queue.weights.copy_(torch.full((size,), float(queue.decay)) ** age)
    queue.ptr.zero_()
    return size


# ----------------------------------------------------------------- measurements
def rss_mib() -> float:
    """Resident set size of this process now (Linux /proc), else the peak so far."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / MIB
    except (OSError, ValueError):
        return peak_rss_mib()


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == 'darwin' else peak / 1024


def malloc_trim() -> bool:
    """Hand the C heap's free pages back to the system (glibc); whether that was possible."""
    try:
        ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):  # no glibc (musl, macOS)
        return False
    return True


def memory(device: torch.device) -> Dict[str, float]:
    """The memory numbers of one moment: RSS on CPU, allocated / peak allocated on CUDA (MiB)."""
    if device.type == 'cuda':
        return dict(allocated_mib=torch.cuda.memory_allocated(device) / MIB,
                    max_allocated_mib=torch.cuda.max_memory_allocated(device) / MIB)
    return dict(rss_mib=rss_mib(), peak_rss_mib=peak_rss_mib())


def count_params(model) -> Dict[str, int]:
    teacher = getattr(getattr(model, 'objective', None), 'teacher', None)
    return dict(total=sum(p.numel() for p in model.parameters()),
                trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
                teacher=sum(p.numel() for p in teacher.parameters()) if teacher is not None else 0)



# ----------------------------------------------------------------- models
def build_model(cfg: Config, device: torch.device):
    """The config's model, random weights (no ``init_weights``), tokenizer built, in train mode."""
    init_default_scope('r2d2lib')
    model = MODELS.build(cfg.model).to(device)
    _ = model.data_preprocessor.tokenizer  # built now, while its vocabulary file exists
    return model.train()



def positive_int(value: str) -> int:
    """argparse type: an integer >= 1."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f'must be >= 1, got {value}')
    return number


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (``/proc/self/clear_refs`` = 5); whether it could."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        return False
    return True


def vm_hwm_mib() -> float:
    """Peak RSS since the last :func:`reset_peak_rss` (``VmHWM``), else ``ru_maxrss``."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mib()


def report_lines(lines: list, json_path: Optional[str], **extra) -> None:
    """Print one JSON line per result and, with ``--json``, write them (and ``extra``) to a file."""
    for line in lines:
        print(json.dumps(line), flush=True)
    if json_path:
        os.makedirs(osp.dirname(osp.abspath(json_path)), exist_ok=True)
        with open(json_path, 'w') as f:
            json.dump(dict(extra, lines=lines), f, indent=2)
