"""Routes that take no body (docs/PROTOCOL.md, Errors): a body sent to one is ignored, unread,
whatever its type; one that declares more than SESSIONHUB_MAX_PAYLOAD_BYTES is refused
``413 payload_too_large`` from its headers, as a route that takes a body refuses an oversize one.

Which routes take none is what they declare (``handlers.openapi_registry``: an operation with no
``body``), so the document and this rule cannot disagree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from handlers.errors import error_body
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


def bodyless_cap(max_bytes: int) -> Middleware:
    """Middleware: a body-less route refuses a declared body over ``max_bytes`` before its handler."""
    routes: dict[tuple[str, str], Operation] = {}
    built: list[bool] = []  # the routes are all installed once the first request arrives

    @web.middleware
    async def bodyless(request: web.Request, handler: Handler) -> web.StreamResponse:
        length = request.content_length
        if length is None or length <= max_bytes or request.method not in WRITES:
            return await handler(request)
        if not built:
            routes.update(_bodyless(request.app))
            built.append(True)
        resource = request.match_info.route.resource
        op = routes.get((request.method, resource.canonical)) if resource is not None else None
        return _too_large(op, max_bytes) if op is not None else await handler(request)

    return bodyless
