"""Whether a text shows anything: a note of invisible characters alone is no note.

A note of a zero-width space, a left-to-right mark, a byte-order mark or an Arabic letter mark
(each of category Cf), or of the blank letters some fonts draw as nothing (the Hangul fillers,
the blank Braille pattern), was stored and exported as a chapter or a marker with no visible
title, where an empty note is named "Clip N" (audit "streamreview").
"""

from __future__ import annotations

from protocol.seen_text import shows_anything

__all__ = ["seen_or_empty", "shows_anything"]


def seen_or_empty(text: str) -> str:
    """``text``, or "" when nothing of it is seen."""
    return text if not text or shows_anything(text) else ""
