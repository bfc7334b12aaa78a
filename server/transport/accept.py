"""The listening socket's acceptor: new connections taken in, and fixed answers given at once.

asyncio's own server accepts a connection in one loop turn, builds its transport in a task on
the next, calls ``connection_made`` on the one after, and reads the request on a fourth; the
handler answers on a fifth. Each turn runs everything that became ready during the last, so
while thousands of clients leave or come back at once (a proxy restart) every turn takes tens
of milliseconds, and a ``/healthz`` probe that needs five of them waited 100-190 ms
(``bench/soak_mass_disconnect.py``, issue 20, finding 3).

An :class:`Acceptor` accepts through public asyncio API (``add_reader`` on the listening
socket, ``connect_accepted_socket`` for the transport, so every other connection takes the
same turns as before). Right after ``accept()`` it peeks at what the client already sent: when
that is one whole ``GET`` of a route with a fixed answer (``handlers.http_common.FIXED_ANSWERS``,
i.e. ``/healthz``) and nothing else (:func:`fixed_request`), the answer is written and the
connection closed in that same turn. Anything else -- another route, a request not yet whole,
a body, a second request behind it -- goes on to the protocol untouched: peeking consumes nothing.

It also counts the connections open from each client address (:class:`ConnectionPlaces`):
past ``SESSIONHUB_MAX_HTTP_CONNECTIONS_PER_ADDRESS`` a new one is answered ``429`` and closed
in the turn it was accepted, before it costs a transport, a protocol or a timer. Without it one
address holding idle or trickling connections (each kept for the HTTP idle timeout, 15 s) took
every descriptor of the process (20,000 from 127.0.0.1 in ~7 s) and the server answered no one,
``/healthz`` included. A connection's place is given back when it closes, or when the Engine.IO
server takes it as a WebSocket (``SESSIONHUB_MAX_CONNECTIONS_PER_ADDRESS`` counts it from there).

And it keeps clients out of the descriptors the process needs for itself (``fd_ceiling``, from
``SESSIONHUB_DESCRIPTOR_RESERVE``): the per-address caps hold one address, but twenty addresses
(or one IPv6 /48, a /64 per connection) took every descriptor again, and then new connections
went unanswered, and the server could open no Redis connection and no file: pages were answered
404 and creates 500 until clients left (``bench/descriptor_flood.py``). A new
connection whose descriptor is numbered at or above the ceiling is answered ``503`` and closed
in the turn it was accepted. No count is kept: ``accept()`` hands out the lowest descriptor
number free (POSIX), so one numbered ``n`` means ``0 .. n-1`` are all open, and since every
client connection kept is numbered below the ceiling, clients hold fewer descriptors than it
whatever else opens and closes -- the rest, up to the open-files limit, stays the process's.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import os
import re
import resource
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate

from aiohttp.http import SERVER_SOFTWARE

from handlers.http_common import REQUEST_ID_HEADER, FixedAnswer, FrontAnswer, limited_unit, request_id_from
from protocol.errors import CodedError, ErrorCode

log = logging.getLogger(__name__)

# Connections accepted per turn at most (asyncio's server takes its ``backlog`` argument, 100
# by default): accepting is cheap, what each connection costs waits for its own turns.
ACCEPT_PER_TURN = 128
# The kernel's queue of connections waiting to be accepted (capped by net.core.somaxconn). A
# connection that finds it full has its SYN dropped and the client tries again after 1 s, then
# 3 s: with aiohttp's 128, thousands of clients connecting at once (a reconnect after a proxy
# restart) left every other new connection, a /healthz probe included, unanswered for 1-3 s.
LISTEN_BACKLOG = 4096
# Out of descriptors or memory, accept() keeps failing while the queue is full: the acceptor
# stops for this long instead of spinning (as asyncio's server does).
RETRY_AFTER_S = 1.0
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# The most a fixed-answer request head may be; a longer one goes the normal way.
MAX_HEAD_BYTES = 4096
_END = b"\r\n\r\n"
_REQUEST_LINE = re.compile(rb"GET (/[!-~]*) HTTP/1\.[01]")
_HEADER = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\x20-\x7e]*?)[ \t]*")
# Headers that make a GET more than a plain read: a body, or a protocol switch.
_LEFT_TO_AIOHTTP = frozenset({b"content-length", b"transfer-encoding", b"upgrade", b"expect"})


# Read from a refused connection before its answer (what it sent already): closed with unread
# bytes, a socket is reset, and the client may never see the answer.
_REFUSED_READ_BYTES = 65536


class ConnectionPlaces:
    """Connections open per client address (its :func:`limited_unit`), at most ``limit`` each.

    A dict increment when a connection is accepted and a decrement when it closes: nothing per
    request. Counted on the connection's peer, the only address known before a byte is read;
    behind a trusted proxy every connection is the proxy's, so none is made then (see
    ``FrontSite``).
    """

    __slots__ = ("limit", "open")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, int] = {}  # address -> connections open (never 0: popped instead)

    def take(self, address: str) -> bool:
        """A place for one more connection from ``address`` (False: it has ``limit`` already)."""
        taken = self.open.get(address, 0)
        if taken >= self.limit:
            return False
        self.open[address] = taken + 1
        return True

    def give_back(self, address: str) -> None:
        """The connection counted on ``address`` is closed (or counted elsewhere now)."""
        left = self.open.pop(address, 1) - 1
        if left > 0:
            self.open[address] = left


# A refusal's reason (sessionhub_connections_refused_total{reason}, the answer's "reason").
PER_ADDRESS = "http_per_address_limit"
FULL = "connection_limit"
# Refusals for want of descriptors are logged at most this often (with how many since).
FULL_LOG_EVERY_S = 10.0
# A connection past the ceiling whose request is not in yet waits this long for it (at most
# this many at once, in the reserve): a health probe is answered even when clients hold all they
# may, as the connection is usually accepted before its first bytes arrive.
FULL_WAIT_S = 0.5
FULL_WAITING = 16


def descriptor_ceiling(reserve: int) -> int:
    """The descriptor number from which a new client connection is refused: the process's
    open-files limit less ``reserve`` (at least half the limit stays open to clients)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 62
    return max(soft - reserve, soft // 2)


def address_full(silent_gone_s: float) -> CodedError:
    """The refusal of a new Socket.IO session from an address holding its most: ``rate_limited``
    with ``retry_after_s``, by when every connection of it that went silent has been ended by
    the ping timeout (``silent_gone_s``: the ping interval and timeout). A crowd behind one NAT
    whose network dropped silently came back to a cap full of its own ghosts, which it cannot
    close, and was told nothing of when they would go."""
    return CodedError(
        ErrorCode.RATE_LIMITED,
        "too many connections from this address; those that went silent end within the ping timeout",
        retry_after_s=math.ceil(silent_gone_s),
    )


def refusal_response(date: str) -> bytes:
    """The answer of a connection over its address's limit: ``429 rate_limited``, then closed."""
    body = (
        b'{"error":"rate_limited","message":"too many connections from this address",'
        b'"reason":"http_per_address_limit","retry_after_s":1}'
    )
    return _answer("429 Too Many Requests", body, date)


def full_response(date: str) -> bytes:
    """The answer of a connection past the descriptors clients may hold: ``503 unavailable``."""
    body = (
        b'{"error":"unavailable","message":"this server holds as many connections as it may; try again",'
        b'"reason":"connection_limit","retry_after_s":1}'
    )
    return _answer("503 Service Unavailable", body, date)


def _answer(status: str, body: bytes, date: str) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Date: {date}\r\n"
        f"Server: {SERVER_SOFTWARE}\r\n"
        "Retry-After: 1\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


@dataclass(frozen=True, slots=True)
class FixedRequest:
    """A whole ``GET`` of a route with a fixed answer, with nothing sent after it."""

    path: str
    request_id: str  # what the caller sent as X-Request-Id ("" when none)


def fixed_request(data: bytes, paths: Mapping[str, FixedAnswer]) -> FixedRequest | None:
    """``data`` as one whole plain ``GET`` of a path in ``paths``; None for anything else.

    None is not a refusal: the connection goes on to the protocol with every byte still unread.
    Taken only: exactly one request head and nothing after it, ``GET <path>`` (no query) over
    HTTP/1.0 or 1.1, printable ASCII, well-formed unfolded headers, and no header announcing a
    body, an upgrade or an ``Expect``.
    """
    end = data.find(_END)
    if end < 0 or end + len(_END) != len(data) or end > MAX_HEAD_BYTES:
        return None
    lines = data[:end].split(b"\r\n")
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        return None
    path = match.group(1).decode("ascii")
    if path not in paths:
        return None
    request_id = ""
    for line in lines[1:]:
        header = _HEADER.fullmatch(line)
        if header is None:
            return None  # malformed, folded or not printable ASCII
        name = header.group(1).lower()
        if name in _LEFT_TO_AIOHTTP:
            return None
        if name == b"x-request-id" and not request_id:
            request_id = header.group(2).decode("ascii")
    return FixedRequest(path, request_id)


class _Date:
    """The ``Date`` header's value, formatted once a second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = formatdate(second, usegmt=True)
        return self._value


def _cache_control(content_type: str) -> str:
    """As ``handlers.web_pages`` marks the app's JSON answers: never stored by a cache."""
    return "Cache-Control: no-store\r\n" if content_type.startswith("application/json") else ""


def fixed_response(answer: FixedAnswer, request_id: str, date: str) -> bytes:
    """The whole HTTP response carrying ``answer``, with the headers every answer of the app has."""
    head = (
        "HTTP/1.1 200 OK\r\n"
        f"Content-Type: {answer.content_type}\r\n"
        f"Content-Length: {len(answer.body)}\r\n"
        f"Date: {date}\r\n"
        f"Server: {SERVER_SOFTWARE}\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "Referrer-Policy: no-referrer\r\n"
        f"{_cache_control(answer.content_type)}"
        f"{REQUEST_ID_HEADER}: {request_id}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + answer.body


def accept_on(
    listening: asyncio.Server,
    protocol_factory: Callable[[str], asyncio.Protocol],
    *,
    fixed: Mapping[str, FixedAnswer],
    observers: list[Callable[[FrontAnswer], None]],
    places: ConnectionPlaces | None,
    on_refused: Callable[[str], None] | None,
    backlog: int,
    descriptor_reserve: int | None,
) -> list[Acceptor]:
    """An :class:`Acceptor` started on each socket of ``listening`` (bound by asyncio and never
    served by it: ``create_server(start_serving=False)``), clients kept below the descriptors of
    ``descriptor_reserve`` (None: no ceiling). Both lanes' sites start theirs so."""
    ceiling = None if descriptor_reserve is None else descriptor_ceiling(descriptor_reserve)
    acceptors = []
    for listener in listening.sockets:
        acceptor = Acceptor(
            listener.fileno(), protocol_factory, fixed=fixed, observers=observers, places=places,
            on_refused=on_refused, backlog=backlog, fd_ceiling=ceiling,
        )  # fmt: skip
        acceptor.start()
        acceptors.append(acceptor)
    return acceptors


class Acceptor:
    """Accepts the connections of one listening socket (see the module docstring)."""

    def __init__(
        self,
        listener_fd: int,
        protocol_factory: Callable[[str], asyncio.Protocol],
        *,
        fixed: Mapping[str, FixedAnswer],
        observers: list[Callable[[FrontAnswer], None]],
        places: ConnectionPlaces | None = None,
        on_refused: Callable[[str], None] | None = None,
        backlog: int = LISTEN_BACKLOG,
        per_turn: int = ACCEPT_PER_TURN,
        fd_ceiling: int | None = None,
    ) -> None:
        """``protocol_factory`` is given the address a connection's place was taken on ("" when
        none was: no ``places``, or no address); the protocol gives it back to ``places`` when the
        connection closes. ``on_refused`` hears each refusal's reason (:data:`PER_ADDRESS`,
        :data:`FULL`). ``fd_ceiling``: connections whose descriptor is numbered this or above
        are refused (None: none are)."""
        # A descriptor of its own for the same socket: the asyncio server that bound it keeps
        # (and closes) the other, and never serves it (create_server(start_serving=False)).
        self._listener = socket.socket(fileno=os.dup(listener_fd))
        self._listener.setblocking(False)
        self._backlog = backlog
        self._factory = protocol_factory
        self._fixed = fixed
        self._observers = observers
        self._per_turn = per_turn
        self._places = places
        self._on_refused = on_refused
        self._fd_ceiling = fd_ceiling if fd_ceiling is not None else 1 << 62
        self._full_logged_s = -FULL_LOG_EVERY_S
        self._full_since_log = 0
        self._full_waiting: dict[socket.socket, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._opening: set[asyncio.Task[None]] = set()
        self._date = _Date()

    def start(self) -> None:
        """Start accepting on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._listener.listen(self._backlog)  # an unstarted asyncio server has not listened yet
        self._loop.add_reader(self._listener.fileno(), self._accept)

    def stop(self) -> None:
        """Stop accepting and close this acceptor's descriptor (the socket's other one stays)."""
        if self._loop is not None:
            self._loop.remove_reader(self._listener.fileno())
            for conn, timer in self._full_waiting.items():
                timer.cancel()
                self._loop.remove_reader(conn.fileno())
                conn.close()
            self._full_waiting.clear()
            self._loop = None
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._listener.close()

    def _accept(self) -> None:
        loop = self._loop
        assert loop is not None
        for _ in range(self._per_turn):
            try:
                conn, address = self._listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # the queue is empty (or that one left before it was taken)
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise  # the loop logs it; the reader stays
                log.error("accept() failed (%s): not accepting for %.0f s", exc, RETRY_AFTER_S)
                loop.remove_reader(self._listener.fileno())
                self._retry = loop.call_later(RETRY_AFTER_S, self._resume)
                return
            conn.setblocking(False)
            if self._fixed and self._answered(conn, address):
                continue
            if conn.fileno() >= self._fd_ceiling:
                self._past_ceiling(conn, address)
                continue
            place = ""
            if self._places is not None and isinstance(address, tuple):
                place = limited_unit(str(address[0]))
                if not self._places.take(place):
                    self._refuse(conn, refusal_response(self._date.now()), PER_ADDRESS)
                    continue
            opening = loop.create_task(self._open(conn, place))
            self._opening.add(opening)
            opening.add_done_callback(self._opening.discard)

    def _resume(self) -> None:
        self._retry = None
        if self._loop is not None:
            self._loop.add_reader(self._listener.fileno(), self._accept)

    async def _open(self, conn: socket.socket, place: str) -> None:
        loop = self._loop
        if loop is None:  # stopped between its accept and this step (a shutdown): nobody serves it
            self._drop(conn, place)
            return
        try:
            await loop.connect_accepted_socket(lambda: self._factory(place), conn)
        except OSError:  # the client left before its transport was made
            self._drop(conn, place)

    def _drop(self, conn: socket.socket, place: str) -> None:
        conn.close()
        if place and self._places is not None:
            self._places.give_back(place)

    def _refuse(self, conn: socket.socket, answer: bytes, reason: str) -> None:
        """Give a refused connection its ``answer`` and close it, in this turn."""
        with contextlib.suppress(OSError):  # nothing sent yet
            conn.recv(_REFUSED_READ_BYTES)  # what it sent already (see _REFUSED_READ_BYTES)
        with contextlib.suppress(OSError):  # the client left: nothing to answer
            conn.send(answer)
        conn.close()
        if self._on_refused is not None:
            self._on_refused(reason)

    def _past_ceiling(self, conn: socket.socket, address: object) -> None:
        """Refuse ``conn``, numbered past the ceiling; first, when its request may be a health
        probe's not in yet, wait for it a moment (:data:`FULL_WAIT_S`)."""
        loop = self._loop
        if not self._fixed or loop is None or len(self._full_waiting) >= FULL_WAITING:
            self._refuse_full(conn)
            return
        fd = conn.fileno()
        self._full_waiting[conn] = loop.call_later(FULL_WAIT_S, self._decide, conn, address)
        loop.add_reader(fd, self._decide, conn, address)

    def _decide(self, conn: socket.socket, address: object) -> None:
        """The request of a connection past the ceiling is in (or was not in time): a health
        probe is answered, anything else refused."""
        timer = self._full_waiting.pop(conn, None)
        if timer is None:
            return  # decided already
        timer.cancel()
        if self._loop is not None:
            self._loop.remove_reader(conn.fileno())
        if not self._answered(conn, address):
            self._refuse_full(conn)

    def _refuse_full(self, conn: socket.socket) -> None:
        self._refuse(conn, full_response(self._date.now()), FULL)
        self._full()

    def _full(self) -> None:
        """Say (at most every :data:`FULL_LOG_EVERY_S`) that clients hold all they may."""
        self._full_since_log += 1
        now = time.monotonic()
        if now - self._full_logged_s >= FULL_LOG_EVERY_S:
            log.warning(
                "%d connections refused: clients hold the descriptors up to %d, the rest of the"
                " open-files limit is kept for Redis and files (SESSIONHUB_DESCRIPTOR_RESERVE)",
                self._full_since_log,
                self._fd_ceiling,
            )
            self._full_logged_s, self._full_since_log = now, 0

    def _answered(self, conn: socket.socket, address: object) -> bool:
        """Give ``conn`` its fixed answer now if its whole request is in (True: done with it)."""
        started = time.perf_counter()
        try:
            data = conn.recv(MAX_HEAD_BYTES + len(_END) + 1, socket.MSG_PEEK)
        except OSError:  # nothing sent yet (or an error the transport will meet and report)
            return False
        request = fixed_request(data, self._fixed) if data else None
        if request is None:
            return False
        request_id = request_id_from(request.request_id)
        response = fixed_response(self._fixed[request.path], request_id, self._date.now())
        # Counted and logged before it is sent, as aiohttp's middlewares do: a client that has
        # its answer finds it in a scrape of any node (multiprocess metrics), not a moment later.
        try:
            if self._observers:
                peer = str(address[0]) if isinstance(address, tuple) else ""
                answered = FrontAnswer(request.path, peer, request_id, 200, time.perf_counter() - started)
                for observe in self._observers:
                    observe(answered)
        finally:
            try:
                conn.recv(len(data))  # exactly what was peeked: the request, read
                # Whole: a new connection's send buffer (16 KiB or more) takes a few hundred bytes.
                conn.send(response)
            except OSError:
                pass  # the client left: nothing to answer
            conn.close()  # what was sent is still delivered, then FIN
        return True
