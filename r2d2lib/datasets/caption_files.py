"""Parsing of ``<image>#<n> caption`` token files and image-id lists (Flickr30k-CN/CNA, COCO-CN).

Two spellings of a caption line exist in the releases:

* ``<image>#<n><TAB><caption>``: Flickr30k (English ``results_20130124.token``),
  Flickr30k-CNA, COCO-CN; the caption is raw text;
* ``<image>#<lang>#<n> <word> <word> ...``: the VisualSearch collections of
  Flickr30k-CN (``TextData/seg.<collection>.caption.txt``), word-segmented
  with spaces.

``<image>`` may carry its extension (``1000092795.jpg#0``) or not.
"""
from __future__ import annotations

import re
from typing import List, NamedTuple

from .annotation_files import iter_text_lines
from .base import annotation_error


class CaptionLine(NamedTuple):
    """One parsed caption line."""

    image: str  # image id or file name, as written before the first '#'
    caption_id: str  # the whole key, e.g. '1000092795#zhb#0'
    text: str  # caption (may be empty: the dataset drops and counts it)
    segmented: bool  # True for the space-separated (VisualSearch) spelling


def join_segmented(text: str) -> str:
    """Undo word segmentation: drop spaces except between ASCII letters/digits.

    ``'一只 黑色 的 狗 在 iPhone 6 旁边'`` -> ``'一只黑色的狗在iPhone 6旁边'``; runs of
    whitespace between ASCII words become one space.
    """
    tokens = text.split()
    if not tokens:
        return ''
    out = [tokens[0]]
    for token in tokens[1:]:
        if _is_ascii_alnum(out[-1][-1]) and _is_ascii_alnum(token[0]):
            out.append(' ')
        out.append(token)
    return ''.join(out)


def _is_ascii_alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()


def parse_caption_line(line: str, path: str, lineno: int) -> CaptionLine:
    """Parse ``<image>#<n><TAB>caption`` or ``<image>#<lang>#<n> caption``.

    Raises ``ValueError`` (file, line) if there is no key/caption separator or
    the key is not ``<image>#<n>`` / ``<image>#<lang>#<n>`` with a numeric ``n``.
    """
    if '\t' in line:
        key, text = line.split('\t', 1)
        segmented = False
    else:
        if not re.search(r'\s', line):
            raise annotation_error(path, lineno, "expected '<image>#<n><TAB><caption>' or "
                                                 f"'<image>#<lang>#<n> <caption>', got {line[:80]!r}")
        key, text = re.split(r'\s', line, maxsplit=1)
        segmented = True
    key = key.strip()
    fields = key.split('#')
    if len(fields) not in (2, 3) or not fields[0] or not fields[-1].isdigit():
        raise annotation_error(path, lineno, f"caption id {key[:80]!r} is not '<image>#<n>' or "
                                             "'<image>#<lang>#<n>'")
    return CaptionLine(fields[0], key, text, segmented)


def read_id_list(path: str) -> List[str]:
    """Image ids of a split list (one per line, first field; blank lines skipped, order kept)."""
    ids: List[str] = []
    seen = set()
    for _, line in iter_text_lines(path):
        image = line.split()[0]
        if image not in seen:
            seen.add(image)
            ids.append(image)
    return ids
