"""What a device is called in its person's lists: the User-Agent of the browser it signed in
from, as one line of plain text."""

from __future__ import annotations

import re

from aiohttp import web

from handlers.payloads import NOT_PLAIN

_SPACES = re.compile(r"\s+")


def device_label(request: web.Request, limit: int) -> str:
    """The request's ``User-Agent``, at most ``limit`` characters of plain text.

    aiohttp reads header bytes as UTF-8, a byte that is not as a lone surrogate (an old player's
    Latin-1 "é"); Redis' encoder refuses those, so a sign-in from such a browser was a 500 that
    had spent its one-time device link. Such bytes become U+FFFD here. Control characters and
    the bidi controls a name may not hold (a label shown in the devices list, where U+202E would
    disguise what follows it) become spaces.
    """
    raw = request.headers.get("User-Agent", "")
    try:
        text = raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate aiohttp's decoding never makes: drop it all the same
        text = raw.encode("utf-8", "replace").decode("utf-8")
    return _SPACES.sub(" ", NOT_PLAIN.sub(" ", text)).strip()[:limit]
