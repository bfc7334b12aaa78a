"""The listening socket's first reader: Engine.IO WebSocket opens answered before aiohttp.

Opening a Socket.IO connection over WebSocket is one HTTP request, ``GET
/socket.io/?EIO=4&transport=websocket`` with the upgrade headers, answered ``101``. Through
aiohttp that request costs a request handler with its task and timers, a request object,
every middleware, and Engine.IO's translation of the request into a WSGI environ, all thrown
away a moment later when the connection is taken over (``server.transport.fastpath``): about a fifth of
the server's CPU per new connection (``bench/connections.py``).

A :class:`FrontProtocol` reads each new connection's first bytes. When they are a complete
request of exactly that shape, and every check the normal path would make passes (see
:func:`parse_upgrade` and ``LightEngineServer.upgrade``), the connection goes straight to
Engine.IO. A head split over several reads is read whole here first, under the connection's idle
timer. Anything else -- another route, a head over ``MAX_HEAD_BYTES``, bytes after the request, a
header that is repeated, folded or not ASCII, a body, an origin or address the normal path
refuses, bytes that are no HTTP request line -- is handed to aiohttp unchanged, with the bytes
already read, so every refusal and every other request is answered by the one path that is
tested for it. A connection that sends nothing, or not its whole head, within the HTTP idle
timeout is closed.

A connection accepted on a place of its address (``server.transport.accept.ConnectionPlaces``)
gives it back when it closes here, when Engine.IO takes it, or -- handed to aiohttp -- when
aiohttp's handler loses it (:attr:`Front.handed`, read by ``FrontSite``).
"""

from __future__ import annotations

import asyncio
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from multidict import CIMultiDict, CIMultiDictProxy

from handlers.http_common import REQUEST_ID_HEADER, FrontAnswer, forwarded_scheme, request_id_from
from server.transport.accept import ConnectionPlaces
from server.transport.leanws import HandshakeError, accept_key

# A request head larger than this goes to aiohttp (whose own limits then apply).
MAX_HEAD_BYTES = 8192
MAX_HEADERS = 64
# What a client may send between its WebSocket open and the answer (it should send nothing).
MAX_EARLY_BYTES = 65536
_END = b"\r\n\r\n"
_PRINTABLE = re.compile(rb"[\t\x20-\x7e]*")
_REQUEST_LINE = re.compile(r"GET (/[!-~]*) HTTP/1\.1")
_METHOD_START = re.compile(rb"[A-Z]{1,16}( |$)")
_HEAD_LINE = re.compile(rb"[A-Z]{1,16} [!-~]+ HTTP/1\.[01]\r?\n")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A GET that announces a body is left to aiohttp (and its request smuggling defences).
_BODY_HEADERS = frozenset({"content-length", "transfer-encoding"})


def _may_be_a_head(head: bytearray) -> bool:
    """Whether ``head`` (no blank line yet) may still become an HTTP/1 request head worth waiting
    for: within ``MAX_HEAD_BYTES``, a method's letters first and, once its first line is there,
    a request line. Anything else (a TLS hello on the plain port, garbage) goes to aiohttp at
    once, which answers it 400 as before."""
    if len(head) > MAX_HEAD_BYTES or not _METHOD_START.match(head):
        return False
    line_end = head.find(b"\n")
    return line_end < 0 or _HEAD_LINE.match(head, 0, line_end + 1) is not None


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """A complete, plain Engine.IO v4 WebSocket open (see :func:`parse_upgrade`)."""

    target: str  # path and query, as sent
    query_string: str
    headers: CIMultiDictProxy[str]
    accept: str  # the Sec-WebSocket-Accept answering its key
    peer: str  # the connection's remote address ("" when unknown)

    def environ(self, forwarded_hops: int = 0) -> dict[str, Any]:
        """The WSGI environ Engine.IO and Socket.IO read, as the aiohttp driver would build it,
        but for ``wsgi.url_scheme``: ``X-Forwarded-Proto`` only when ``forwarded_hops`` trusted
        proxies are in front, and only ``http`` or ``https`` (the driver copies the raw header)."""
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "GET",
            "QUERY_STRING": self.query_string,
            "RAW_URI": self.target,
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": self.peer or "unknown",
            "PATH_INFO": self.target.split("?", 1)[0],
            "SCRIPT_NAME": "",
        }
        for name, value in self.headers.items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        environ["wsgi.url_scheme"] = forwarded_scheme(environ.get("HTTP_X_FORWARDED_PROTO", ""), forwarded_hops)
        return environ


def parse_upgrade(data: bytes, path: str, peer: str) -> UpgradeRequest | None:
    """``data`` as an Engine.IO WebSocket open on ``path``; None for anything else.

    None is not a refusal: it means "not for the fast path", and aiohttp gets the bytes.
    Taken only: one whole request and nothing after it, ``GET <path>?...`` over HTTP/1.1,
    printable ASCII, at most :data:`MAX_HEADERS` headers none of them repeated or folded, no
    body, a ``Host``, ``EIO=4`` and ``transport=websocket`` without ``sid`` (a new session),
    and a valid WebSocket opening handshake.
    """
    end = data.find(_END)
    if end < 0 or end + len(_END) != len(data) or end > MAX_HEAD_BYTES:
        return None
    head = data[:end]
    if not _PRINTABLE.fullmatch(head.replace(b"\r\n", b"")):
        return None
    lines = head.decode("ascii").split("\r\n")
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None or len(lines) - 1 > MAX_HEADERS:
        return None
    target = match.group(1)
    route, _, query_string = target.partition("?")
    if route != path:
        return None
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name) or name in headers:
            return None  # folded (leading blank), malformed or repeated
        headers[name] = value.strip(" \t")
    if "Host" not in headers or not _BODY_HEADERS.isdisjoint(name.lower() for name in headers):
        return None
    query = urllib.parse.parse_qs(query_string)
    if query.get("EIO") != ["4"] or query.get("transport") != ["websocket"] or "sid" in query or "j" in query:
        return None
    if headers.get("Upgrade", "").lower() != "websocket":  # Engine.IO's own test: exactly this
        return None
    try:
        accept = accept_key(headers)
    except HandshakeError:
        return None
    return UpgradeRequest(target, query_string, CIMultiDictProxy(headers), accept, peer)


class Upgrader(Protocol):
    """What opens Engine.IO sessions from the front (``server.transport.fastpath.LightEngineServer``)."""

    def upgrade(self, request: UpgradeRequest, transport: asyncio.Transport, early: bytearray) -> bool:
        """Take the connection (True), or leave it to aiohttp (False, nothing done).

        Bytes that arrive after a taken request, until the upgrader serves the connection,
        collect in ``early`` (at most :data:`MAX_EARLY_BYTES`; past it the connection is cut).
        """
        ...


@dataclass(slots=True)
class Front:
    """What every front connection of one listening socket shares."""

    http: Callable[[], asyncio.Protocol]  # aiohttp's request handler factory (web.Server)
    upgrader: Upgrader
    path: str
    idle_timeout_s: float
    waiting: set[FrontProtocol]  # connected, nothing read yet (closed when the site stops)
    observers: list[Callable[[FrontAnswer], None]]  # what counts and logs HTTP requests
    places: ConnectionPlaces | None = None  # connections open per address (None: not counted)
    # aiohttp's handler of a connection -> the address its place was taken on, given back when
    # the handler loses it (an entry per open connection handed on, never per request).
    handed: dict[asyncio.Protocol, str] = field(default_factory=dict)


class HalfClosing(asyncio.Protocol):
    """aiohttp's handler of a connection handed on, which answers a write whose client half-closed.

    A client may send its whole request and then shut its sending side (``shutdown(SHUT_WR)``,
    ``nc -N``, some scripts and proxies). aiohttp's handler closes the connection at that end of
    input, so a write was applied and its answer never sent: the client could not tell it from
    one refused. Here an end of input while a write (``POST``, ``PUT``, ``PATCH``, ``DELETE``)
    is being handled keeps the connection open for writing: aiohttp answers it and then closes
    (``RequestHandler.close``: no further request is read).

    Everything else closes at once, as aiohttp does, because a client that closed the whole
    connection sends the same end of input: a read (a long export must stop for a client gone,
    not read on until a write fails; a read is safe to ask again), an Engine.IO request (a long
    poll's answer carries events that its session must not believe delivered), a connection
    waiting for its next request, and a request whose body that end cut short (its read fails
    now, a ``400`` logged, not after the body's 10 s). What is being handled is read from
    aiohttp's private parts (the fast lane's contract, ``server.transport.fastpath``); without
    them the end of input closes the connection, as aiohttp does. Every other call is passed on.
    """

    __slots__ = ("_engine_path", "_inner", "_transport")

    def __init__(self, inner: asyncio.Protocol, engine_path: str) -> None:
        self._inner = inner
        self._engine_path = engine_path
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        inner: Any = self._inner
        if not _handling(inner) or not self._may_answer(inner):
            return self._inner.eof_received()  # closed at once, as aiohttp does
        inner.close()  # answer the request being handled, read no other
        # A request taken off the queue an instant ago is not aiohttp's current request yet: its
        # body is looked at once its handling has started (the next turn of the loop).
        asyncio.get_running_loop().call_soon(self._close_unless_answerable)
        return True

    def _may_answer(self, handler: Any) -> bool:
        """Every body whole, and the request in hand a write that is no Engine.IO request (one
        taken off the queue an instant ago is not in hand yet: looked at again next turn)."""
        current = handler._current_request
        if current is None:
            return _bodies_whole(handler)
        engine = current.path.rstrip("/") == self._engine_path.rstrip("/")
        return current.method in _WRITES and not engine and _bodies_whole(handler)

    def _close_unless_answerable(self) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing() and not self._may_answer(self._inner):
            transport.close()  # a read, a poll, a body that will never come whole

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._inner.connection_lost(exc)


_UNKNOWN = object()
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _handling(handler: Any) -> bool:
    """Whether ``handler`` (aiohttp's) has a request in hand: not waiting for its next one, and
    its private parts are the ones known (another aiohttp: no, aiohttp's own behaviour)."""
    parts = (getattr(handler, name, _UNKNOWN) for name in ("_waiter", "_current_request", "_messages"))
    if any(part is _UNKNOWN for part in parts) or not callable(getattr(handler, "close", None)):
        return False
    waiter = handler._waiter
    return waiter is None or waiter.done()


def _bodies_whole(handler: Any) -> bool:
    """Whether every request ``handler`` holds (the current one, the queued ones) has its body
    whole: a body the end of input cut short is not waited for (``400`` at once, not after the
    body's 10 s)."""
    bodies = [payload for _, payload in handler._messages]
    current = handler._current_request
    if current is not None:
        bodies.append(current.content)
    return all(body.is_eof() for body in bodies)


class FrontProtocol(asyncio.Protocol):
    """One new connection until its first bytes say where it goes (see the module docstring)."""

    __slots__ = ("_early", "_front", "_head", "_place", "_taken", "_timer", "_transport")

    def __init__(self, front: Front, place: str = "") -> None:
        self._front = front
        self._place = place  # the address whose place this connection holds ("" when none)
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._taken: asyncio.Transport | None = None  # given to the upgrader, not served yet
        self._early = bytearray()
        # The request head so far: read here, under this connection's one idle timer, until it
        # is whole. Handed to aiohttp at its first byte, a head trickled after 14 s of silence got
        # aiohttp's own 15 s on top (30 s in all where HTTP_IDLE_TIMEOUT_S says 15).
        self._head = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._front.waiting.add(self)
        self._timer = asyncio.get_running_loop().call_later(self._front.idle_timeout_s, self.close)

    def data_received(self, data: bytes) -> None:
        taken = self._taken
        if taken is not None:  # the upgrader has not served the connection yet: it gets these
            self._early += data
            if len(self._early) > MAX_EARLY_BYTES:
                taken.abort()
            return
        transport = self._transport
        if transport is None:
            return
        if self._head or _END not in data:
            self._head += data
            if _END not in self._head[-len(data) - 3 :] and _may_be_a_head(self._head):
                return  # not whole yet: the idle timer still runs
            data, self._head = bytes(self._head), bytearray()
        self._settle()
        front = self._front
        peer = transport.get_extra_info("peername")
        request = parse_upgrade(data, front.path, str(peer[0]) if peer else "")
        if request is not None and front.upgrader.upgrade(request, transport, self._early):
            self._taken = transport
            self._give_back()  # a Socket.IO connection now, counted by the Engine.IO server
            if front.observers:
                request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER, ""))
                answered = FrontAnswer(front.path, request.peer, request_id)
                for observe in front.observers:
                    observe(answered)
            return
        handler = front.http()
        if self._place:
            front.handed[handler] = self._place
            self._place = ""
        protocol = HalfClosing(handler, front.path)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(data)

    def eof_received(self) -> bool | None:
        return None  # closes the connection: it never sent a request

    def connection_lost(self, exc: Exception | None) -> None:
        self._taken = None
        self._settle()
        self._give_back()

    def _give_back(self) -> None:
        if self._place and self._front.places is not None:
            self._front.places.give_back(self._place)
        self._place = ""

    def close(self) -> None:
        """Close a connection that has not sent its request (idle timeout or shutdown)."""
        transport = self._transport
        self._settle()
        if transport is not None:
            transport.close()

    def _settle(self) -> None:
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._front.waiting.discard(self)
