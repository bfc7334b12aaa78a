"""Shared HTTP edge helpers: bearer identity, bounded JSON bodies, error wrapping."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import HttpVersion11, web
from multidict import CIMultiDict, CIMultiDictProxy

from auth.claims import Claims
from auth.tokens import TokenService
from handlers.errors import to_http
from handlers.held_bytes import HELD_BYTES_KEY
from handlers.metrics import METRICS_KEY
from protocol.errors import CodedError, ErrorCode
from storage.clock import Clock
from storage.sessions import SessionDirectory

log = logging.getLogger(__name__)

RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Where a request naming a session is a use of it (the API routes of every capability).
USE_PREFIXES = ("/api/", "/voicebot/")

# Routes whose path is a secret (the Telegram webhook's), by that path: the template request
# logs and metric labels carry instead (a log line or a scrape must not give the secret away).
SECRET_ROUTES = web.AppKey("secret_routes", dict[str, str])


def add_secret_route(app: web.Application, path: str, template: str, handler: RouteHandler) -> None:
    """``POST path``, known elsewhere only by ``template``."""
    app.router.add_post(path, handler)
    app.setdefault(SECRET_ROUTES, {})[path] = template


def route_label(request: web.Request) -> str:
    """The route's path template, for logs and metric labels (a secret path as its template)."""
    resource = request.match_info.route.resource
    if resource is None:
        return "unmatched"
    canonical = resource.canonical
    return request.app.get(SECRET_ROUTES, {}).get(canonical, canonical)


# A JSON body (at most SESSIONHUB_MAX_PAYLOAD_BYTES) that takes longer than this is refused.
BODY_READ_TIMEOUT_S = 10.0


def bearer_claims(request: web.Request, tokens: TokenService, clock: Clock) -> Claims:
    """Claims of the ``Authorization: Bearer`` token, or ``unauthorized``."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise CodedError(ErrorCode.UNAUTHORIZED, "an Authorization: Bearer token is required")
    claims = tokens.verify(token.strip())
    if claims.exp <= clock.now_s():
        raise CodedError(ErrorCode.UNAUTHORIZED, "token expired")
    return claims


async def json_body(request: web.Request, *, max_bytes: int, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object body, bounded in size (``payload_too_large``)."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise CodedError(ErrorCode.PAYLOAD_TOO_LARGE, f"the body is limited to {max_bytes} bytes", max_bytes=max_bytes)
    raw = await read_body(request, max_bytes)
    if not raw.strip():
        if optional:
            return {}
        raise CodedError(ErrorCode.INVALID_PAYLOAD, "a JSON object body is required")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CodedError(ErrorCode.INVALID_PAYLOAD, "the body is not valid JSON") from exc
    except RecursionError as exc:
        raise CodedError(ErrorCode.INVALID_PAYLOAD, "the body is nested too deeply") from exc
    if not isinstance(body, dict):
        raise CodedError(ErrorCode.INVALID_PAYLOAD, "the body must be a JSON object")
    return body


# Set on a request whose client waits for ``100 Continue`` before it sends its body (``Expect:
# 100-continue``, which curl sends for bodies over 1 KB): sent by :func:`continue_body`.
CONTINUE_OWED: Any = web.RequestKey("continue_owed", bool) if hasattr(web, "RequestKey") else "sessionhub.continue"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


async def deferred_continue(request: web.Request) -> web.StreamResponse | None:
    """Every route's ``Expect`` handler: ``100 Continue`` is owed, not sent.

    aiohttp's own sends it as soon as the route is known, before any check: a client then sent
    its whole body (a 10 MiB upload) only to be refused from its headers (a bad token, over the
    quota, too large) and have it drained. Owed, it is sent when the handler reads the body
    (:func:`continue_body`), every check that could refuse the request having passed; a refusal
    before that is the client's final answer, its body never sent. Another expectation is
    ``417``, as aiohttp answers it."""
    expect = request.headers.get("Expect", "")
    if request.version != HttpVersion11:
        return None  # HTTP/1.0 has no 100 Continue (aiohttp ignores the header there too)
    if expect.lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
    request[CONTINUE_OWED] = True
    return None


def defer_continue(app: web.Application) -> None:
    """Have every route of ``app`` (added so far) answer ``Expect`` with :func:`deferred_continue`."""
    for route in app.router.routes():
        # A public method of the route (web_app asks match_info.expect_handler, which is it).
        route.handle_expect_header = deferred_continue  # type: ignore[method-assign]


async def continue_body(request: web.Request) -> None:
    """Send the ``100 Continue`` the client waits for, if it does: call just before the body is
    read, every check that could refuse the request done."""
    if request.get(CONTINUE_OWED):
        request[CONTINUE_OWED] = False
        await request.writer.write(_CONTINUE)
        request.writer.output_size = 0  # what aiohttp's own handler does: the answer starts after it


# A body refused while it grows because the node holds too many unfinished ones: anonymous
# clients stalling bodies by the hundred (handlers.held_bytes); an honest one may send it again.
HELD_TOO_MUCH = "the server holds too many unfinished request bodies; send it again"

# A client that closed its connection before its body's end: its fault, not the server's (a 400
# in the request log and the metrics, no traceback), though nobody reads the answer.
CUT_BODY = "the connection closed before the body arrived whole"


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole body, at most ``max_bytes`` (``payload_too_large``), within the read deadline."""
    # One read() returns what has arrived so far, not the body: a body split over TCP
    # segments must be read to its end (or until it is over the cap), and within a deadline,
    # or a client trickling its body holds the handler forever.
    # What an unfinished body holds counts in the node's budget (handlers.held_bytes), as an
    # unfinished WebSocket frame does; one that arrives whole in one read is never counted.
    budget = request.config_dict.get(HELD_BYTES_KEY)
    chunks: list[bytes] = []
    size = 0
    counted = 0
    await continue_body(request)
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_S):
            while chunk := await request.content.read(max_bytes + 1 - size):
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    raise CodedError(
                        ErrorCode.PAYLOAD_TOO_LARGE, f"the body is limited to {max_bytes} bytes", max_bytes=max_bytes
                    )
                if budget is not None and not request.content.at_eof():
                    budget.held += size - counted
                    counted = size
                    if budget.over():
                        raise CodedError(ErrorCode.INVALID_PAYLOAD, HELD_TOO_MUCH)
    except TimeoutError:
        message = f"the body did not arrive within {BODY_READ_TIMEOUT_S:g} s"
        raise CodedError(ErrorCode.INVALID_PAYLOAD, message) from None
    except ConnectionResetError:  # aiohttp's word for a client gone before its body's end
        raise CodedError(ErrorCode.INVALID_PAYLOAD, CUT_BODY) from None
    finally:
        if budget is not None:
            budget.held -= counted
    return b"".join(chunks)


# Both Socket.IO lanes' refusal of a long-poll sent while one of its session's waits already.
POLL_OVERLAP = "a long-poll of this session is already waiting"
# ... and of a long-polling POST sent while one of its session's is still being read.
POST_OVERLAP = "a POST of this session is still being read; send the next once it is answered"


def client_address(request: web.Request, *, trust_forwarded_for: int) -> str:
    """The client's address; an ``X-Forwarded-For`` hop only behind trusted proxies
    (``trust_forwarded_for``: how many, 0 for none; see :func:`address_of`)."""
    return address_of(request.remote, forwarded_for(request.headers), trust_forwarded_for)


def forwarded_for(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> str:
    """Every ``X-Forwarded-For`` header of a request as one list: a proxy may add its hop as a
    header of its own (HAProxy's ``option forwardfor``) after one the client sent, and the
    first header alone is then the client's word."""
    return ",".join(headers.getall("X-Forwarded-For", ()))


def forwarded_https(headers: CIMultiDictProxy[str] | CIMultiDict[str], hops: int = 1) -> bool:
    """Whether the trusted proxy in front says the request came to it over HTTPS: the last
    ``X-Forwarded-Proto`` value, every header read as one list, as :func:`address_of` reads
    ``X-Forwarded-For``. A proxy that appends (or adds a header of its own) passes on what the
    client wrote before its own value, so the first value is the client's word. Ask this only
    behind a trusted proxy."""
    return forwarded_scheme(",".join(headers.getall("X-Forwarded-Proto", ())), hops) == "https"


def forwarded_scheme(forwarded_proto: str, hops: int) -> str:
    """The scheme the outermost of ``hops`` trusted proxies says the client used: its
    ``X-Forwarded-Proto`` value (every header as one list), read as :func:`address_of` reads
    ``X-Forwarded-For``. Only ``http`` or ``https``; anything else (a value the client made up,
    which Engine.IO's origin check took as the scheme) and no trusted proxy (``hops`` 0) is
    ``http``, what the connection itself is."""
    if hops > 0:
        scheme = hop_from_end(forwarded_proto, hops).lower()
        if scheme in ("http", "https"):
            return scheme
    return "http"


# A host as an origin names it: a DNS name (IDNs in their ASCII form), an IPv4 address (a name
# too, by this pattern) or a bracketed IPv6 literal; then an optional port.
_FORWARDED_HOST = re.compile(
    r"(?P<host>[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
    r"|\[(?P<ipv6>[0-9a-f:.]{2,45})\])(?::(?P<port>[0-9]{1,5}))?"
)


def forwarded_host(forwarded_host_header: str, hops: int) -> str | None:
    """The host[:port] the outermost of ``hops`` trusted proxies says the client asked for: its
    ``X-Forwarded-Host`` value (every header as one list), read as :func:`forwarded_scheme`
    reads ``X-Forwarded-Proto``, lower-cased as a browser writes an origin. None without a
    trusted proxy (``hops`` 0: the header is the client's word) and for anything but one valid
    host[:port] (a path, userinfo, a blank, a port over 65535): Engine.IO took the header's
    first value raw, so a client could name any origin it liked as this server's own."""
    if hops <= 0:
        return None
    value = hop_from_end(forwarded_host_header, hops).lower()
    match = _FORWARDED_HOST.fullmatch(value) if len(value) <= 260 else None
    if match is None:
        return None
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        return None
    ipv6 = match.group("ipv6")
    if ipv6 is not None:
        try:
            ipaddress.IPv6Address(ipv6)
        except ValueError:
            return None
    return value


def hop_from_end(values: str, hops: int) -> str:
    """The value ``hops`` from the end of a comma-separated list (1: the last), stripped; the
    first when the list is shorter (a request that came through fewer proxies than there are:
    the first hop is then the one the outermost proxy saw)."""
    if hops == 1:  # the usual case: one split from the end
        return values.rsplit(",", 1)[-1].strip()
    listed = values.split(",")
    return listed[max(0, len(listed) - hops)].strip()


def address_of(remote: str | None, forwarded_for: str, trust_forwarded_for: int) -> str:
    """:func:`client_address` from the connection's remote address and its ``X-Forwarded-For``.

    Behind a trusted proxy the address is the header's *last* hop: the one that proxy wrote,
    the peer it saw. Every hop before it came with the request, so the client chose it: a proxy
    that appends (nginx's ``$proxy_add_x_forwarded_for``, most load balancers) passes on
    ``X-Forwarded-For: <anything the client sent>, <the client>``, and the first hop let one
    client be a new address per request, past every per-address cap. A proxy that replaces the
    header writes one hop, the same either way. Several headers are one list (RFC 9110 5.3).

    ``trust_forwarded_for`` is how many trusted proxies are in front (0: none, the header is the
    client's word and ignored; True is one). Behind a chain of N, each appending its peer, the
    client is the hop N from the end (the last hop is the inner proxy, the outermost one wrote
    the hop before); a header with fewer hops came through fewer proxies, its first is the client.
    """
    if trust_forwarded_for:
        forwarded = hop_from_end(forwarded_for, int(trust_forwarded_for))
        if forwarded:
            return limited_unit(forwarded[:64])
    return limited_unit(remote) if remote else "unknown"


def limited_unit(address: str) -> str:
    """What a per-address limit counts an address under: an IPv6 address by its /64 network.

    One host is given a whole /64 (SLAAC, privacy addresses; most home and cloud connections get
    one or more), and may use any of its 2^64 addresses: counted one by one, every per-address
    cap (guest tokens, creates, connections, the guests' quota) was one per address it chose to
    use. An IPv4-mapped IPv6 address is its IPv4 address; anything else is kept as it is.
    """
    if ":" not in address:
        return address  # IPv4, or a name: the common case costs one test
    try:
        ip = ipaddress.IPv6Address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))


@dataclass(frozen=True, slots=True)
class FrontAnswer:
    """A request answered before aiohttp saw it (``server.transport.front``: a WebSocket open;
    ``server.transport.accept``: a fixed answer such as ``/healthz``): what the HTTP middlewares
    would have counted and logged for it, had it gone through them."""

    path: str
    remote: str
    request_id: str  # the id its log line and X-Request-Id carry (request_id_from)
    status: int = 101
    seconds: float = 0.0  # from its request read to its answer ready to send (a fixed answer's)


# Called once per such answer: whatever counts or logs HTTP requests registers here too.
FRONT_HOOKS = web.AppKey("front_hooks", list[Callable[[FrontAnswer], None]])


@dataclass(frozen=True, slots=True)
class FixedAnswer:
    """The answer of a ``GET`` route that never changes (``/healthz``): a site may give it
    itself, as soon as a connection's whole request is in (``server.transport.accept``)."""

    content_type: str
    body: bytes


# GET path -> its fixed answer; the route's own handler answers the same for everything else.
FIXED_ANSWERS = web.AppKey("fixed_answers", dict[str, FixedAnswer])

REQUEST_ID_HEADER = "X-Request-Id"
# A caller's id that is kept (and so what every answer's header holds: drawn ids are hex).
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
_ACCEPTED_ID = re.compile(REQUEST_ID_PATTERN)
# Drawn ids are a process prefix and a count: unique enough to follow one request through the
# logs, and free (a random draw per request is a getrandom() call on every WebSocket handshake).
_ID_PREFIX = secrets.token_hex(4)
_ID_COUNT = itertools.count(1)


def request_id_from(offered: str) -> str:
    """The caller's ``X-Request-Id`` when it is a plain token, else a fresh id."""
    return offered if _ACCEPTED_ID.match(offered) else f"{_ID_PREFIX}{next(_ID_COUNT):08x}"


def session_use_middleware(sessions: SessionDirectory) -> Any:
    """Middleware: a successful API request on a route naming ``{session_id}`` is a use of that
    session, so an access (seed 001), recorded in the background and throttled
    (``SessionDirectory.used``). Operators' ``/admin`` routes look without touching (inspecting
    an orphan must not revive it), and so do the HTML pages: a page's own load of the session
    is its access, and must learn whether the session was an orphan before it. A ``HEAD`` is a
    look too (handlers/head_requests.py): it changes nothing, an access included."""

    @web.middleware
    async def session_use(request: web.Request, handler: RouteHandler) -> web.StreamResponse:
        response = await handler(request)
        session_id = request.match_info.get("session_id")
        used = response.status < 400 and request.method != "HEAD"
        if session_id and used and request.path.startswith(USE_PREFIXES):
            sessions.used(session_id)
        return response

    return session_use


def guarded(handler: RouteHandler) -> RouteHandler:
    """Turn every exception of ``handler`` into the JSON error response of its code."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except ConnectionError as exc:
            if not client_gone(request):
                return to_http(exc, metrics=request.app.get(METRICS_KEY))
            # The client left while its answer was being written (a reset while the writer
            # waited for the socket: aiohttp's plain ConnectionError("Connection lost")): its
            # doing, not a fault of the server, and any client can make it happen at will.
            log.debug("the client of %s %s left mid-answer: %s", request.method, request.path, exc)
            return web.Response(status=CLIENT_CLOSED_REQUEST)  # its write fails quietly too
        except Exception as exc:
            return to_http(exc, metrics=request.app.get(METRICS_KEY))

    return wrapper


# The status an answer nobody could receive is counted with (nginx's "client closed request").
CLIENT_CLOSED_REQUEST = 499


def client_gone(request: web.Request) -> bool:
    """Whether the request's connection is closed or closing: nobody reads an answer."""
    transport = request.transport
    return transport is None or transport.is_closing()


T = TypeVar("T")

# How often a long answer's preparation looks whether its client is still there.
CLIENT_CHECK_S = 0.25


async def unless_client_leaves(request: web.Request, work: Coroutine[Any, Any, T]) -> T:
    """``work``'s result, or ``ConnectionResetError`` (answered 499 by :func:`guarded`) once the
    client has gone, ``work`` cancelled: aiohttp runs a handler to its end after its client left
    (its handler cancellation is off), and an export a person cancelled went on preparing for
    seconds, holding one of their export slots (the next Download was refused "at most 2")."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=CLIENT_CHECK_S)
            if done:
                return task.result()
            if client_gone(request):
                raise ConnectionResetError("the client left before its answer was ready")
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
