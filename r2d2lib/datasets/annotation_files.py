"""Readers of annotation files that name the file and 1-based line of any malformed entry.

Used by every loader, so "malformed line" means the same thing everywhere:
``ValueError('<file>, line <n>: <problem>')``.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

from .base import annotation_error

_KIND_NAMES = {str: 'a string', int: 'an integer', float: 'a number', list: 'a list',
               dict: 'an object', bool: 'a boolean'}


def iter_text_lines(path: str, skip_blank: bool = True) -> Iterator[Tuple[int, str]]:
    """Yield ``(lineno, line)`` of a UTF-8 text file, without the line break.

    A UTF-8 BOM on line 1 is accepted; blank lines are skipped unless
    ``skip_blank`` is False. Raises ``ValueError`` (file, line) on invalid UTF-8.
    """
    with open(path, 'rb') as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode('utf-8-sig' if lineno == 1 else 'utf-8')
            except UnicodeDecodeError as err:
                raise annotation_error(path, lineno, f'not valid UTF-8 ({err})') from None
            line = line.rstrip('\r\n')
            if skip_blank and not line.strip():
                continue
            yield lineno, line


def parse_json_object(line: str, path: str, lineno: int) -> Dict[str, Any]:
    """Parse one JSON-lines entry that must be an object."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise annotation_error(path, lineno, f'invalid JSON ({err})') from None
    if not isinstance(record, dict):
        raise annotation_error(path, lineno, f'expected a JSON object, got {type(record).__name__}')
    return record


def iter_json_lines(path: str) -> Iterator[Tuple[int, Dict[str, Any]]]:
    """Yield ``(lineno, object)`` for every non-blank line of a JSON-lines file."""
    for lineno, line in iter_text_lines(path):
        yield lineno, parse_json_object(line, path, lineno)


def require(record: Dict[str, Any], key: str, kinds: type | Tuple[type, ...], path: str,
            lineno: Optional[int], aliases: Sequence[str] = ()) -> Any:
    """``record[key]`` (or the first alias present), checked to be of ``kinds``.

    Raises ``ValueError`` (file, line) if missing or of another type; ``bool``
    never passes for ``int``.
    """
    for name in (key, *aliases):
        if name in record:
            value = record[name]
            kinds_t = kinds if isinstance(kinds, tuple) else (kinds,)
            if not isinstance(value, kinds_t) or (isinstance(value, bool) and bool not in kinds_t):
                wanted = ' or '.join(_KIND_NAMES.get(k, k.__name__) for k in kinds_t)
                raise annotation_error(path, lineno, f'"{name}" must be {wanted}, got '
                                                     f'{type(value).__name__}')
            return value
    names = ' / '.join(f'"{n}"' for n in (key, *aliases))
    raise annotation_error(path, lineno, f'missing key {names}')


def iter_json_array(path: str) -> Iterator[Tuple[int, int, Any]]:
    """Yield ``(index, lineno, element)`` of a file holding one JSON array.

    Elements are decoded one at a time, so a syntax error names the element
    and the 1-based line where it starts (releases such as AI Challenger's
    are a single line: the element index then locates the problem).
    """
    with open(path, encoding='utf-8-sig') as f:
        text = f.read()
    decoder = json.JSONDecoder()
    pos = _skip_space(text, 0)
    if not text.startswith('[', pos):
        raise annotation_error(path, text.count('\n', 0, pos) + 1, 'expected a JSON array')
    lineno, counted = 1, 0
    pos = _skip_space(text, pos + 1)
    index = 0
    if text.startswith(']', pos):
        return
    while True:
        lineno += text.count('\n', counted, pos)
        counted = pos
        try:
            element, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise annotation_error(path, err.lineno, f'element {index}: invalid JSON ({err.msg}, '
                                                     f'column {err.colno})') from None
        yield index, lineno, element
        index += 1
        pos = _skip_space(text, end)
        if text.startswith(']', pos):
            return
        if not text.startswith(',', pos):
            lineno += text.count('\n', counted, pos)
            raise annotation_error(path, lineno, f"after element {index - 1}: expected ',' or ']'")
        pos = _skip_space(text, pos + 1)


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in ' \t\r\n':
        pos += 1
    return pos
