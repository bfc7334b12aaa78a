"""CORS on the pattern routes, and on every ``/api`` answer to an unknown route or method.

A middleware rather than a catch-all route: routes match in registration order, so a
catch-all installed by one capability would shadow every route registered after it. The JSON
404 / 405 bodies themselves are ``handlers.route_errors``'s (one shape for every prefix).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

# Idempotency-Key is a request header of the creates (POST /api/sessions, remix, publish) and
# Idempotent-Replayed the answer's mark of a replay: a page of another origin can send the one
# only when the preflight allows it, and read the other only when it is exposed.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, If-Match, Authorization, Idempotency-Key",
    "Access-Control-Expose-Headers": "ETag, Retry-After, Idempotent-Replayed",
    "Access-Control-Max-Age": "600",
}


def _is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def _is_pattern_api(path: str) -> bool:
    return path in ("/api/health", "/api/sessions") or path.startswith("/api/sessions/")


@web.middleware
async def api_edges(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CORS on the pattern routes (preflights included) and on ``/api``'s unknown routes and methods."""
    path = request.path
    if not _is_api(path):
        return await handler(request)
    cors = _is_pattern_api(path)
    if cors and request.method == "OPTIONS":
        return web.Response(status=204, headers=CORS_HEADERS)
    response = await handler(request)
    if request.match_info.http_exception is not None:  # the router's 404 / 405
        cors = True
    if cors and not response.prepared:
        response.headers.update(CORS_HEADERS)
    return response
