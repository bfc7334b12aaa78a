"""Text measured as people see it: characters are extended grapheme clusters (Unicode UAX #29),
as the pages count them (``Intl.Segmenter``, web/js/text_fit.js).

A flag is two code points, a family emoji seven, a Devanagari syllable three or four: a limit
said "60 characters" and counted in code points refused a 29-letter Hindi name, and a cut made in
code points kept half a flag or half a family (a different emoji) or a broken syllable (audit
"localeworld"). Every limit a person reads in characters is counted here, with a byte cap behind
it (a "character" may be any number of code points).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

import regex

_GRAPHEME = regex.compile(r"\X")
# Bytes of UTF-8 a limit of N characters allows: 20 per character, as a clip's note (100 and
# 2,000). 100 flags or 80 families fit; a "zalgo" letter of hundreds of marks does not.
BYTES_PER_CHARACTER = 20


# Letters and symbols drawn as blank space, used for names that look empty.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# Format characters (zero-width space and joiner, direction marks, a byte-order mark) and marks
# that only change the letter before them (an accent, a vowel sign): alone, nothing is seen.
_NOT_SEEN_ALONE = frozenset(("Cf", "Mn", "Me"))


def shows_anything(text: str) -> bool:
    """Whether ``text`` has a character a person sees: a note or a name of invisible characters
    alone (a zero-width space, a direction mark, the blank letters some fonts draw as nothing,
    a lone accent) is no note and no name (audits "streamreview", "anonhostile")."""
    return any(
        not ch.isspace() and ch not in _BLANK_LETTERS and unicodedata.category(ch) not in _NOT_SEEN_ALONE for ch in text
    )


def grapheme_count(value: str) -> int:
    """How many characters a person sees in ``value``."""
    if value.isascii():  # one character per code point: the usual text skips the segmentation
        return len(value)
    return len(_GRAPHEME.findall(value))


def cut_seen(value: str, max_chars: int) -> str:
    """The first ``max_chars`` characters of ``value`` as seen, never part of one."""
    if len(value) <= max_chars:
        return value
    return "".join(_GRAPHEME.findall(value)[:max_chars])


def cut_whole(value: str, max_code_points: int) -> str:
    """The longest start of ``value`` of whole characters within ``max_code_points`` code points:
    for a limit counted in code points elsewhere (a YouTube chapter's title), cut where a person
    would not see half a flag."""
    if len(value) <= max_code_points:
        return value
    kept: list[str] = []
    used = 0
    for character in _GRAPHEME.findall(value):
        if used + len(character) > max_code_points:
            break
        kept.append(character)
        used += len(character)
    return "".join(kept)


def seen_size(max_chars: int, what: str, *, max_bytes: int | None = None) -> Callable[[str], str]:
    """A pydantic ``AfterValidator``: ``value`` of at most ``max_chars`` characters as seen and
    ``max_bytes`` of UTF-8 (``BYTES_PER_CHARACTER`` each by default); ``what`` names it in the
    refusal ("a title")."""
    limit_bytes = max_bytes if max_bytes is not None else max_chars * BYTES_PER_CHARACTER

    def check(value: str) -> str:
        if len(value.encode("utf-8", "surrogatepass")) > limit_bytes:
            raise ValueError(f"{what} holds at most {limit_bytes} bytes of UTF-8")
        # Code points bound clusters from above: a short text skips the segmentation.
        if len(value) > max_chars and grapheme_count(value) > max_chars:
            raise ValueError(f"{what} holds at most {max_chars} characters")
        return value

    return check
