"""Work over a raid's worth of clips in slices, giving the event loop a turn between them.

A stream may hold ten thousand clips (SESSIONHUB_CLIPS_MAX_PER_SESSION, more when configured):
turning them all into rows or text in one go held the loop for hundreds of ms, and every client
of the node (acks, deliveries, pings) waited that long. Each slice here is a few ms of work.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from aiohttp import web

from handlers.streams.formats import SLICE

# Work between two turns of the loop when text is put together from pieces.
TURN_S = 0.002

T = TypeVar("T")
R = TypeVar("R")


async def mapped(fn: Callable[[T], R], items: Sequence[T], *, size: int = SLICE) -> list[R]:
    """``[fn(x) for x in items]``, a slice of ``size`` items per turn of the loop."""
    out: list[R] = []
    for start in range(0, len(items), size):
        if start:
            await asyncio.sleep(0)
        out.extend(fn(x) for x in items[start : start + size])
    return out


async def joined(chunks: Iterable[str]) -> str:
    """``"".join(chunks)``, a turn of the loop whenever making the pieces took ``TURN_S``
    (see ``formats.*_chunks``: each piece is at most one slice of rows)."""
    pieces: list[str] = []
    turn = time.perf_counter()
    for piece in chunks:
        pieces.append(piece)
        if time.perf_counter() - turn >= TURN_S:
            await asyncio.sleep(0)
            turn = time.perf_counter()
    return "".join(pieces)


def json_chunks(value: Any, depth: int) -> Iterator[str]:
    """``json.dumps(value)`` (aiohttp's ``json_response``) in pieces: the dicts and lists of the
    first ``depth`` levels piece by piece, anything deeper in one piece each."""
    if depth <= 0 or not isinstance(value, dict | list) or not value:
        yield json.dumps(value)
    elif isinstance(value, dict):
        yield "{"
        for number, (key, item) in enumerate(value.items()):
            yield (", " if number else "") + json.dumps(str(key)) + ": "
            yield from json_chunks(item, depth - 1)
        yield "}"
    else:
        yield "["
        for number, item in enumerate(value):
            if number:
                yield ", "
            yield from json_chunks(item, depth - 1)
        yield "]"


async def json_answer(value: Any, depth: int) -> web.Response:
    """``web.json_response(value)``, its text made in pieces (see :func:`json_chunks`)."""
    return web.Response(text=await joined(json_chunks(value, depth)), content_type="application/json")
