"""One JSON error shape for routes that do not exist: ``{"error": ..., "message": ...}``.

Under every API prefix (``/api``, ``/voicebot``, ``/admin``) and Engine.IO's (``/socket.io``) an
unknown path answers 404 and a known path asked with another method answers 405 with ``Allow``, in
JSON, instead of aiohttp's
text/plain answers. The Keyboardia routes (``/api/sessions``, ``/api/health``) keep their API's
human-readable ``error`` values ("Not found", "Method not allowed", as its other errors read);
the rest answer wire codes (``not_found``, ``method_not_allowed``). Page routes are untouched.

Only the router's own refusals are rewritten (``request.match_info.http_exception``): a handler
that answers 404 itself keeps its body.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from handlers.errors import error_body
from protocol.errors import CodedError, ErrorCode

# /socket.io too: Engine.IO's route answers its own refusals in JSON (server.transport), and a
# method or path it does not take must not be the one bare-text answer there.
JSON_PREFIXES = ("/api", "/voicebot", "/admin", "/socket.io")


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def is_keyboardia(path: str) -> bool:
    """The pattern API's routes, whose errors read as the Keyboardia seed's."""
    return path == "/api/health" or _under(path, "/api/sessions")


@web.middleware
async def route_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """JSON 404 / 405 (with ``Allow``) for routes and methods the router does not know."""
    path = request.path
    if not any(_under(path, prefix) for prefix in JSON_PREFIXES):
        return await handler(request)
    refused = request.match_info.http_exception
    if refused is None:
        return await handler(request)
    route = f"{request.method} {path}"
    if isinstance(refused, web.HTTPMethodNotAllowed):
        allowed = sorted(refused.allowed_methods)
        headers = {"Allow": ", ".join(allowed)}
        message = f"{route}: allowed methods are {', '.join(allowed)}"
        if is_keyboardia(path):
            return web.json_response({"error": "Method not allowed", "message": message}, status=405, headers=headers)
        body = error_body(CodedError(ErrorCode.METHOD_NOT_ALLOWED, message, allowed=allowed))
        return web.json_response(body, status=405, headers=headers)
    message = f"no route {route}"
    if is_keyboardia(path):
        return web.json_response({"error": "Not found", "message": message}, status=404)
    return web.json_response(error_body(CodedError(ErrorCode.NOT_FOUND, message)), status=404)
