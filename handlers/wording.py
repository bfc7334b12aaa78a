"""What a person is told when a value does not match a field's pattern.

pydantic's own message quotes the regular expression (``String should match pattern
'^[^\\x00-\\x1f…]*$'``), which says nothing to whoever typed the value. A pattern declared with
:func:`worded` carries its words, and :func:`handlers.payloads.validate` answers with them.
"""

from __future__ import annotations

_WORDS: dict[str, str] = {}


def worded(pattern: str, words: str) -> str:
    """``pattern`` itself, noted with ``words``: what a value must be, as a person reads it."""
    _WORDS[pattern] = words
    return pattern


def words_for(pattern: object) -> str | None:
    """The words noted for ``pattern``, if any."""
    return _WORDS.get(str(pattern))
