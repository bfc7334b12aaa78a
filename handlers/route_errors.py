"""One JSON error shape for routes that do not exist: ``{"error": ..., "message": ...}``.

Under every API prefix (``/api``, ``/voicebot``, ``/admin``) and Engine.IO's (``/socket.io``) an
unknown path answers 404 and a known path asked with another method answers 405 with ``Allow``,
in JSON, instead of aiohttp's text/plain answers, with sessionhub's wire codes (``not_found``,
``method_not_allowed``). Page routes are untouched.

``/api`` is shared with the Keyboardia-compatible pattern API, whose clients read its words: its
routes (``/api/sessions``, ``/api/health``) and every ``/api`` path outside sessionhub's own
families (``/api/streams``, ``/api/auth``, …: the first segments of the routes registered there)
answer as Keyboardia's worker does, ``404 {"error": "Not found", "message"}``, a known route
asked with a method it does not take included (Keyboardia has no 405).

Only the router's own refusals are rewritten (``request.match_info.http_exception``): a handler
that answers 404 itself keeps its body.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from handlers.errors import error_body
from handlers.head_requests import allowed_methods, refused_template
from protocol.errors import CodedError, ErrorCode

# /socket.io too: Engine.IO's route answers its own refusals in JSON (server.transport), and a
# method or path it does not take must not be the one bare-text answer there.
JSON_PREFIXES = ("/api", "/voicebot", "/admin", "/socket.io")
KEYBOARDIA_NOT_FOUND = "Not found"


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def is_keyboardia(path: str) -> bool:
    """The pattern API's routes, whose errors read as the Keyboardia seed's."""
    return path == "/api/health" or _under(path, "/api/sessions")


def _family(path: str) -> str:
    """The first segment after ``/api/`` ('' for ``/api`` itself)."""
    return path[len("/api/") :].split("/", 1)[0] if path.startswith("/api/") else ""


def own_families(router: web.UrlDispatcher) -> frozenset[str]:
    """sessionhub's own API families under ``/api``: the first segment of every route registered
    there that is not the pattern API's (read from the router, so a new family counts at once)."""
    families = set()
    for resource in router.resources():
        path = resource.canonical
        if _under(path, "/api") and not is_keyboardia(path) and _family(path):
            families.add(_family(path))
    return frozenset(families)


def answers_as_keyboardia(request: web.Request) -> bool:
    """True for the pattern API's paths and the ``/api`` paths of no family of sessionhub's."""
    path = request.path
    if is_keyboardia(path):
        return True
    return _under(path, "/api") and _family(path) not in own_families(request.app.router)


@web.middleware
async def route_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """JSON 404 / 405 (with ``Allow``) for routes and methods the router does not know."""
    path = request.path
    if not any(_under(path, prefix) for prefix in JSON_PREFIXES):
        return await handler(request)
    refused = request.match_info.http_exception
    if refused is None:
        return await handler(request)
    # The path as sent: decoded, "/admin%2Fmetrics" read "no route GET /admin/metrics", naming a
    # route that exists (audit "adminhostile").
    route = f"{request.method} {request.rel_url.raw_path}"
    allowed = sorted(refused.allowed_methods) if isinstance(refused, web.HTTPMethodNotAllowed) else None
    if answers_as_keyboardia(request):
        message = f"no route {route}" if allowed is None else f"no route {route}; it takes {', '.join(allowed)}"
        return web.json_response({"error": KEYBOARDIA_NOT_FOUND, "message": message}, status=404)
    if allowed is not None:
        # HEAD only where the route takes it (handlers/head_requests.py: a GET that writes does not).
        allowed = allowed_methods(set(allowed), await refused_template(request))
        message = f"{route}: allowed methods are {', '.join(allowed)}"
        body = error_body(CodedError(ErrorCode.METHOD_NOT_ALLOWED, message, allowed=allowed))
        return web.json_response(body, status=405, headers={"Allow": ", ".join(allowed)})
    return web.json_response(error_body(CodedError(ErrorCode.NOT_FOUND, f"no route {route}")), status=404)
