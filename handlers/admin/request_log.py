"""One log line per HTTP request, with a request id the response carries (``X-Request-Id``).

A caller's own ``X-Request-Id`` is kept when it is a plain token, so one id follows a request
through a proxy; otherwise the server draws one. The fields go to the log record as extras:
with ``SESSIONHUB_LOG_FORMAT=json`` each is a JSON field (see ``server/logs.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from aiohttp import web

from handlers.http_common import REQUEST_ID_HEADER, SECRET_ROUTES, FrontAnswer, request_id_from, route_label

log = logging.getLogger("sessionhub.request")
# The status logged for a request cancelled before its answer (no answer was sent).
CANCELLED_STATUS = 499

# A typed request key where aiohttp has them (web.RequestKey, 3.14); a plain string key on the
# older releases pyproject.toml allows (a missing attribute would break the import).
REQUEST_ID_KEY: Any = web.RequestKey("request_id", str) if hasattr(web, "RequestKey") else "sessionhub.request_id"
# The line of a request whose status is settled when its answer is prepared (a file's), written then.
PENDING_LINE_KEY: Any = (
    web.RequestKey("request_log_pending", Callable[[int], None])  # type: ignore[arg-type]
    if hasattr(web, "RequestKey")
    else "sessionhub.request_log_pending"
)


def request_id_of(request: web.Request) -> str:
    """The caller's request id when it is a plain token, else a fresh one."""
    return request_id_from(request.headers.get(REQUEST_ID_HEADER, ""))


@web.middleware
async def request_log(request: web.Request, handler: Any) -> web.StreamResponse:
    """Tag the request with an id, answer it in ``X-Request-Id``, log one line when done."""
    request_id = request_id_of(request)
    request[REQUEST_ID_KEY] = request_id
    started = time.perf_counter()
    status = 500
    deferred = False
    try:
        response: web.StreamResponse = await handler(request)
        status = response.status
        if isinstance(response, web.FileResponse) and not response.prepared:
            # A file's answer settles its status as aiohttp starts sending it (a file that is not
            # there becomes a 404 then, a condition met a 304, a range a 206 or 416): its line
            # is written then (add_request_id), with that status; it was logged a 200.
            request[PENDING_LINE_KEY] = partial(_line_of, request, request_id, started)
            deferred = True
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        # Cut before an answer (the server stopping under an upload still arriving): no answer
        # was sent, as nginx's 499 says; it was logged as a 500, an error of the server's own.
        status = CANCELLED_STATUS
        raise
    finally:
        if not deferred:
            _line_of(request, request_id, started, status)


def _line_of(request: web.Request, request_id: str, started: float, status: int) -> None:
    route = route_label(request)
    # A secret route's path is its template (the route label says which template it is).
    path = route if request.app.get(SECRET_ROUTES, {}).get(request.path) else request.path
    _line(request_id, request.method, path, route, status, started, request.remote or "")


def log_front_answer(answer: FrontAnswer) -> None:
    """The line :func:`request_log` writes, for a request answered before aiohttp (a WebSocket
    open by ``server.transport.front``, a fixed answer by ``server.transport.accept``)."""
    if log.isEnabledFor(logging.INFO):
        started = time.perf_counter() - answer.seconds
        _line(answer.request_id, "GET", answer.path, answer.path, answer.status, started, answer.remote)


def _line(request_id: str, method: str, path: str, route: str, status: int, started: float, remote: str) -> None:
    log.info(
        "%s %s %d",
        method,
        path[:200],
        status,
        extra={
            "request_id": request_id,
            "method": method,
            "path": path[:200],
            "route": route,
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "remote": remote,
        },
    )


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every response, streamed ones included, names its request id."""
    pending = request.pop(PENDING_LINE_KEY, None)
    if pending is not None:
        pending(response.status)
    request_id = request.get(REQUEST_ID_KEY)
    if request_id and response.status != 101:
        response.headers.setdefault(REQUEST_ID_HEADER, str(request_id))
