"""Routes that take no body (docs/PROTOCOL.md, Errors): a body sent to one is ignored, unread,
whatever its type; one that declares more than SESSIONHUB_MAX_PAYLOAD_BYTES is refused
``413 payload_too_large`` from its headers, as a route that takes a body refuses an oversize one.

A body that declares no length (``Transfer-Encoding: chunked``) cannot be judged from its headers:
it is read (within the body-read deadline, at most one byte past the cap) and dropped, and
refused the same way once it runs past the cap. Left unread, it was answered as if it were empty
and then drained by aiohttp for 10 s, whatever its size: the cap held only for bodies that said
their length.

Which routes take none is what they declare (``handlers.openapi_registry``: an operation with no
``body``), so the document and this rule cannot disagree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from handlers.errors import error_body
from handlers.http_common import read_body
from handlers.openapi_registry import ErrorShape, Operation, installed
from protocol.errors import CodedError, ErrorCode

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def takes_no_body(op: Operation) -> bool:
    """Whether ``op`` is a write that declares no body."""
    return op.body is None and op.method.upper() in WRITES


def _bodyless(app: web.Application) -> dict[tuple[str, str], Operation]:
    return {(op.method.upper(), op.path): op for op in installed(app) if takes_no_body(op)}


def _too_large(op: Operation, max_bytes: int) -> web.Response:
    message = f"this route takes no body; one over {max_bytes} bytes is refused"
    if op.errors is ErrorShape.PATTERNS:  # the pattern API's own words for it
        return web.json_response({"error": "Request body too large", "maxBytes": max_bytes}, status=413)
    body = error_body(CodedError(ErrorCode.PAYLOAD_TOO_LARGE, message, max_bytes=max_bytes))
    return web.json_response(body, status=413)


async def _dropped(request: web.Request, op: Operation, max_bytes: int) -> web.Response | None:
    """Read a body of no declared length and drop it: None when it was within the cap, else the
    refusal (413 past the cap; 400 when it did not arrive within the read deadline)."""
    try:
        await read_body(request, max_bytes)
    except CodedError as exc:
        if exc.code is ErrorCode.PAYLOAD_TOO_LARGE:
            return _too_large(op, max_bytes)
        if op.errors is ErrorShape.PATTERNS:
            return web.json_response({"error": exc.message}, status=exc.code.http_status)
        return web.json_response(error_body(exc), status=exc.code.http_status)
    return None


def bodyless_cap(max_bytes: int) -> Middleware:
    """Middleware: a body-less route refuses a body over ``max_bytes`` before its handler (a
    declared one from its headers, one of no declared length as it is read)."""
    routes: dict[tuple[str, str], Operation] = {}
    built: list[bool] = []  # the routes are all installed once the first request arrives

    def operation(request: web.Request) -> Operation | None:
        if not built:
            routes.update(_bodyless(request.app))
            built.append(True)
        resource = request.match_info.route.resource
        return routes.get((request.method, resource.canonical)) if resource is not None else None

    @web.middleware
    async def bodyless(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in WRITES:
            return await handler(request)
        length = request.content_length
        if length is None:
            if not request.body_exists or (op := operation(request)) is None:
                return await handler(request)
            refused = await _dropped(request, op, max_bytes)
            return refused if refused is not None else await handler(request)
        if length <= max_bytes:
            return await handler(request)
        op = operation(request)
        return _too_large(op, max_bytes) if op is not None else await handler(request)

    return bodyless
