"""Large HTTP answers written piece by piece, as the client reads them.

aiohttp writes a ``web.Response``'s whole body with one ``transport.write``: what the kernel
does not take at once stays in the process (asyncio's transport buffer, a copy) until the
client reads it. A client that asks and never reads held a copy of each answer: measured, 300
raw connections from one address each asking ``GET /openapi.json`` (286 KB, anonymous) and
reading nothing held 87 MB more server RSS (290 KB each) until the HTTP idle timeout cut them,
and an address may hold 1000 HTTP connections (``SESSIONHUB_MAX_HTTP_CONNECTIONS_PER_ADDRESS``):
~290 MB per address, for any answer of that size (a 64 KiB pattern, a page of history).

:func:`paced_bodies` takes every plain ``web.Response`` whose body is over :data:`PACED_OVER_BYTES`
and sends it instead as a ``StreamResponse`` of the same status, headers and cookies, in
:data:`PIECE_BYTES` pieces, each written once the connection has drained below aiohttp's
mark (64 KiB): a client that stops reading holds about that much of the process, whatever the
answer's size. Bodies that are not plain bytes (files, streamed answers) are left alone: they
pace themselves.

Every answer's connection is watched by the app's :class:`handlers.write_deadline.WriteDeadline`
(when it has one) from the moment its handler returns: a client that takes none of it for
``SESSIONHUB_WRITE_STALL_TIMEOUT_S`` has its connection aborted, which also ends a paced answer
waiting for a drain that would never come (before, its handler waited for ever).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from handlers.write_deadline import WRITE_DEADLINE_KEY, WriteDeadline

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Answers up to this size go out as they are (one write, the common case costs nothing more).
PACED_OVER_BYTES = 64 * 1024
PIECE_BYTES = 16 * 1024


@web.middleware
async def paced_bodies(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The handler's answer, its large body written as the client reads it (module docstring)."""
    response = await handler(request)
    deadline = request.app.get(WRITE_DEADLINE_KEY)
    if deadline is not None:  # the answer is written from here on (or was, when prepared)
        deadline.watch(request.transport)
    if not isinstance(response, web.Response) or response.prepared:
        return response
    body = response.body
    if not isinstance(body, bytes) or len(body) <= PACED_OVER_BYTES:
        return response
    return await _paced(request, response, body, deadline)


async def _paced(
    request: web.Request, response: web.Response, body: bytes, deadline: WriteDeadline | None
) -> web.StreamResponse:
    paced = web.StreamResponse(status=response.status, reason=response.reason, headers=response.headers)
    for morsel in response.cookies.values():
        paced.cookies[morsel.key] = morsel
    paced.content_length = len(body)
    if response.keep_alive is False:  # the handler asked for the connection to close after it
        paced.force_close()
    await paced.prepare(request)
    try:
        if request.method != "HEAD":
            view = memoryview(body)
            for start in range(0, len(body), PIECE_BYTES):
                if deadline is not None:  # kept watched for as long as the answer is written
                    deadline.watch(request.transport)
                await paced.write(view[start : start + PIECE_BYTES])
        await paced.write_eof()
    except ConnectionError:
        # The client left, or took nothing until the write deadline aborted the connection:
        # nobody is there to answer (aiohttp's own writes end the same way for a client gone).
        # A reset, a broken pipe, or aiohttp's plain ConnectionError("Connection lost") when the
        # connection is lost while the writer waits for the socket to drain.
        pass
    return paced
