"""Text hygiene in one place: what a caption or a query must be before it is tokenised.

Used by the datasets (a caption that is not valid Unicode stops with its file and line) and by
the data preprocessor's ``tokenize`` (training, evaluation, the inferencer, the web demo: a text
that is empty, not valid Unicode or not a str is refused with its index). The rest of the text
rules (typed special tokens stay text, truncation counted) live in ``tokenize`` itself, see
:class:`r2d2lib.models.data_preprocessors.ImageTextDataPreprocessor`.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence


def invalid_unicode(text: str) -> Optional[str]:
    """Why ``text`` is not valid Unicode (a lone surrogate, which UTF-8 cannot encode), or None."""
    try:
        text.encode('utf-8')
    except UnicodeEncodeError as err:
        return (f'character {err.start} is a lone surrogate {text[err.start]!r} '
                f'(in {text[:40]!r})')
    return None


def check_texts(texts: Sequence[Any]) -> None:
    """Refuse what cannot be tokenised faithfully, naming the text's index.

    Raises:
        TypeError: a text is not a str.
        ValueError: a text is empty or whitespace only, or not valid Unicode (a lone surrogate).
    """
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f'text {index} is a {type(text).__name__}, not a str: {text!r:.60}')
        why = invalid_unicode(text)
        if why is not None:
            raise ValueError(f'text {index} is not valid Unicode: {why}')
        if not text.strip():
            raise ValueError(f'text {index} is empty{" (whitespace only)" if text else ""}: '
                             'there is nothing to encode')
