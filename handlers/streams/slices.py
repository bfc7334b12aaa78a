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
from storage.streams.slices import released, sorted_in_slices

__all__ = [
    "TURN_S",
    "encoded",
    "filtered",
    "json_answer",
    "json_chunks",
    "mapped",
    "released",
    "sent",
    "sorted_in_slices",
]

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


async def filtered(keep: Callable[[T], bool], items: Sequence[T], *, size: int = SLICE) -> list[T]:
    """``[x for x in items if keep(x)]``, a slice of ``size`` items per turn of the loop."""
    out: list[T] = []
    for start in range(0, len(items), size):
        if start:
            await asyncio.sleep(0)
        out.extend(x for x in items[start : start + size] if keep(x))
    return out


# Characters put in one piece of a body (one write to the connection) before it is encoded.
PIECE_CHARS = 1 << 16


async def encoded(chunks: Iterable[str]) -> list[bytes]:
    """The UTF-8 bytes of ``"".join(chunks)`` in pieces of about ``PIECE_CHARS`` characters,
    a turn of the loop whenever making them took ``TURN_S``. Never one string or bytes of the
    whole: joining a 200,000-clip export (~40 MB) and copying it into the connection's buffer
    held the loop ~80 ms (UTF-8 encodes each character on its own: the same bytes)."""
    pieces: list[bytes] = []
    group: list[str] = []
    size = 0
    turn = time.perf_counter()
    for chunk in chunks:
        group.append(chunk)
        size += len(chunk)
        if size >= PIECE_CHARS:
            pieces.append("".join(group).encode())
            group, size = [], 0
        if time.perf_counter() - turn >= TURN_S:
            await asyncio.sleep(0)
            turn = time.perf_counter()
    if group:
        pieces.append("".join(group).encode())
    return pieces


async def sent(
    request: web.Request,
    pieces: list[bytes],
    *,
    content_type: str,
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """A 200 answer of ``pieces`` (its ``Content-Length`` their sum: the bytes and headers of a
    ``web.Response`` of them joined), written piece by piece, waiting for the connection to
    drain between them, so no turn of the loop copies the whole body."""
    response = web.StreamResponse(headers=headers)
    response.content_type = content_type
    response.charset = "utf-8"
    response.content_length = sum(len(piece) for piece in pieces)
    await response.prepare(request)
    if request.method != "HEAD":  # a HEAD is answered the headers alone, as web.Response does
        for piece in pieces:
            await response.write(piece)
    await response.write_eof()
    return response


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


async def json_answer(request: web.Request, value: Any, depth: int) -> web.StreamResponse:
    """``web.json_response(value)``, its text made and sent in pieces (see :func:`json_chunks`)."""
    return await sent(request, await encoded(json_chunks(value, depth)), content_type="application/json")
