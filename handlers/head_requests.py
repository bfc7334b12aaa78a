"""HEAD on the GET routes: the GET's status and headers without its body, and nothing changed.

aiohttp answers ``HEAD`` on every ``GET`` route by running the GET's handler and dropping the
body. That is right for a GET that only reads, and wrong for one that writes: a HEAD of
``/api/listening`` created the caller's listening history, which then showed in
``/api/me/sessions``. A HEAD is a look, never a use (RFC 9110 9.3.2: the same as GET without
the body; a safe method): it marks no session accessed (``http_common.session_use_middleware``),
and a GET route listed in :data:`NO_HEAD` refuses it with ``405`` and an ``Allow`` that names
its methods but HEAD, because its GET cannot answer without its effect (the effect is what the
answer reports, as an access's ``orphaned``) or streams its body as it reads (aiohttp would send
that body to a HEAD, and the client would read it as its next answer).

``tests/test_head_requests.py`` asks every GET route of the router with HEAD and compares Redis
before and after: a new route that writes fails there until it is listed here (or writes no more).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from handlers.errors import error_body
from protocol.errors import CodedError, ErrorCode

_ACCESS = "marks the session accessed: its answer says whether it was an orphan before"
_NODES = "writes this node's heartbeat and drops the stale ones of other nodes"
_STREAMED = "streams its body as it reads: aiohttp would send that body to a HEAD too"

# GET route (its path template) -> what its GET does that a HEAD must not.
NO_HEAD: dict[str, str] = {
    "/api/listening": "creates the caller's listening history on first use and marks it accessed",
    "/api/sessions/{session_id}": _ACCESS,
    "/api/streams/{session_id}": _ACCESS,
    "/voicebot/sessions/{session_id}": _ACCESS,
    "/api/streams/{session_id}/review": "builds the review's index of the clips (kept for the next reads)",
    "/api/streams/{session_id}/review/clips": "builds the review's index of the clips (kept for the next reads)",
    "/voicebot/sessions/{session_id}/chunks": "makes the audio links' signing key, the first time one is signed",
    "/api/auth/me": "keeps the caller's device (a visit: what it owns is kept from now)",
    "/admin/metrics": _NODES,
    "/admin/alerts": _NODES,
    "/metrics": _NODES,
    "/admin/export": _STREAMED,
    "/api/listening/export": _STREAMED,
}


def template_of(request: web.Request) -> str:
    """The path template of the route ``request`` matched ('' when none did)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else ""


async def refused_template(request: web.Request) -> str:
    """The path template of the route whose path ``request`` names, though not its method (a
    ``405`` of the router, whose match names no route): the first resource that knows the path."""
    for resource in request.app.router.resources():
        _, methods = await resource.resolve(request)
        if methods:
            return resource.canonical
    return ""


def takes_head(template: str) -> bool:
    """Whether the GET route ``template`` answers HEAD (every GET route not in :data:`NO_HEAD`)."""
    return template not in NO_HEAD


def allowed_methods(methods: set[str] | frozenset[str], template: str) -> list[str]:
    """``methods`` of the route ``template`` as its ``Allow`` names them: HEAD only where it is taken."""
    return sorted(m for m in methods if m != "HEAD" or takes_head(template))


@web.middleware
async def head_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``405`` + ``Allow`` for a HEAD of a GET route whose GET changes something; else the handler."""
    if request.method != "HEAD" or request.match_info.http_exception is not None:
        return await handler(request)
    template = template_of(request)
    if takes_head(template):
        return await handler(request)
    resource = request.match_info.route.resource
    methods = {route.method for route in resource} if resource is not None else {"GET"}
    allowed = allowed_methods(methods, template)
    message = f"HEAD {request.path}: allowed methods are {', '.join(allowed)} (its GET {NO_HEAD[template]})"
    body = error_body(CodedError(ErrorCode.METHOD_NOT_ALLOWED, message, allowed=allowed))
    return web.json_response(body, status=405, headers={"Allow": ", ".join(allowed)})
