"""Whether a text shows anything: a note of invisible characters alone is no note.

A note of a zero-width space, a left-to-right mark, a byte-order mark or an Arabic letter mark
(each of category Cf), or of the blank letters some fonts draw as nothing (the Hangul fillers,
the blank Braille pattern), was stored and exported as a chapter or a marker with no visible
title, where an empty note is named "Clip N" (audit "streamreview").
"""

from __future__ import annotations

import unicodedata

# Letters and symbols drawn as blank space, used for names that look empty.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def shows_anything(text: str) -> bool:
    """Whether ``text`` has a character a person sees."""
    return any(not ch.isspace() and ch not in _BLANK_LETTERS and unicodedata.category(ch) != "Cf" for ch in text)


def seen_or_empty(text: str) -> str:
    """``text``, or "" when nothing of it is seen."""
    return text if not text or shows_anything(text) else ""
