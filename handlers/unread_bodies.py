"""An answer sent before its request's body arrived whole says ``Connection: close``.

A refusal may come before the body is read (a 413 for a ``Content-Length`` over the cap, a 401,
a 404): aiohttp then reads what is left of the body for up to ``LINGER_S`` and closes the
connection. Without ``Connection: close`` on that answer a client that keeps connections alive
(aiohttp's pool, requests' session) sent its next request on the connection being closed and
got a disconnect instead of an answer. A body that arrived whole but was not read costs nothing:
aiohttp drops it and the connection stays open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def close_after_unread_bodies(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The handler's answer, marked to close the connection when the body is still arriving."""
    try:
        response = await handler(request)
    except web.HTTPException as refused:  # aiohttp's own answers, raised (its 413 among them)
        _close_if_unread(request, refused)
        raise
    _close_if_unread(request, response)
    return response


def _close_if_unread(request: web.Request, response: web.StreamResponse) -> None:
    if request.body_exists and not request.content.is_eof() and not response.prepared:
        response.force_close()
