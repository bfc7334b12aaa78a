"""The stock lane: python-socketio and python-engineio as released, through their documented API.

It serves when an installed library is outside the versions the fast lane was tested with
(``server.transport.versions``), or when ``SESSIONHUB_TRANSPORT=stock`` asks for it: slower
(a task and an ``asyncio.Queue`` per connection, one write per packet), never down. It keeps
the contract of ``server.transport.contract``: events of a connection run one after another,
in order (``async_handlers=False``); a handler's ack is put on the socket's queue before the
handler's task yields (python-engineio's ``AsyncSocket.send`` does not suspend on an unbounded
queue); :class:`StockOutlet` puts behind it on the same queue, so the order is the queue's.

Messages are screened before python-socketio parses them (:meth:`StockSessionServer.screen`,
put in front of its handler through Engine.IO's public handler registry): one over
``max_payload_bytes`` (a binary message's attachments counted with its header), one declaring
more than ``MAX_ATTACHMENTS`` attachments, a malformed event or a reserved event name, binary or
not, is answered as on the fast lane (``server.transport.messages``), and a refused message's
attachments are dropped as they arrive. A binary message is held here until its last attachment
(at most ``max_payload_bytes``), then handed to python-socketio whole: python-socketio keeps a
pending message's parts itself, and that is not reachable through public API.

HTTP answers, as on the fast lane (:meth:`StockSessionServer.handle_request`): a request routed
as a WebSocket opening that is not one (HTTP/1.0, no ``Connection: upgrade``, two keys) is a
``400 invalid_payload`` (Engine.IO would answer it a 500 or a bare string), Engine.IO's own 400s
("Invalid session", ...) get the server's JSON error shape, and a long-polling POST that is not
an Engine.IO payload ends its session with a 400 (:meth:`StockSessionServer.post`; python-engineio
answers it 200 and drops the whole batch). Engine.IO's packets are written with
:mod:`protocol.wire_json`, its ids drawn from ``server.random_ids``, and clients are kept by
``server.transport.rooms.RoomIndex`` (a mass disconnect of N clients O(N), not O(N^2)).

Limits, as on the fast lane (``tests/test_hostile_preauth.py``, ``tests/transport/test_slow_client.py``):

- **Per-address cap.** The lane registers the Socket.IO route itself, in front of Engine.IO's
  documented entry point ``handle_request``: a GET opening a session from an address that holds
  ``max_connections_per_address`` is answered ``429 rate_limited`` (counted as
  ``per_address_limit``). The place is taken before Engine.IO opens the session, held by it
  from Engine.IO's connect event, and given back on its disconnect event, on a refused connect,
  or when the opening fails half-way (the session is then closed at once).
- **Connections and descriptors.** New connections are accepted as on the fast lane, by
  ``server.transport.accept`` (``server.transport.stock_site``): plain HTTP connections per
  address (``max_http_connections_per_address``, a WebSocket given back once Engine.IO takes
  it), the descriptor reserve, and ``/healthz`` answered in the turn it is accepted.
- **Connect deadline.** A session that has not joined namespace ``/`` within
  ``connect_timeout_s`` of Engine.IO's connect event is closed, its pending long-poll or
  WebSocket included.
- **Slow-client cut.** A poller is cut (reason ``slow client``) once more than
  ``slow_limit_bytes`` wait for its next poll (:class:`Backlog`). A WebSocket is not counted
  so (what python-engineio's writer has taken from the queue but not yet sent is not visible
  through public API, :meth:`StockSessionServer.queued`): it is cut, with the same reason, by
  the write deadline (``SESSIONHUB_WRITE_STALL_TIMEOUT_S``) once its client takes nothing for
  that long while bytes wait for it, PONGs or not (``server.transport.stock_deadline``, from
  the aiohttp request's transport). A poll's answer is an HTTP answer, under the deadline as
  every other (``handlers.paced_bodies``).

What the stock lane leaves to the fast lane, which needs private parts for it (aiohttp's
``WebSocketResponse`` reads the frames, inside python-engineio's driver): unfinished WebSocket
frames are not budgeted (``held_bytes``, the node's budget, is taken and left to the routes'
bodies), a client's close frame is answered
with 1000 (the fast lane echoes a sendable code; aiohttp answers the reserved codes it knows with
1002 as the fast lane does, but 1006 and codes of 5000 and over with 1000), and the outbound
budget (``outbound_budget_bytes``): a WebSocket's unsent bytes are bounded by the write deadline
alone (see above); the fast lane's pipelining, batched writes and per-turn admission are speed,
not behaviour.

Public API only, with one exception: ``_send_packet`` is overridden to count what is sent (the
``sessionhub_socket_*_sent_total`` metrics and a poller's :class:`Backlog`; should python-socketio
rename it, acks would go uncounted, nothing else). Otherwise the attributes used (``eio``,
``handlers``, ``manager``, ``packet_class``, ``sockets``, a socket's ``sid``, ``queue``,
``closed``, ``connected``, ``upgraded``, Engine.IO's ``max_http_buffer_size``) and methods
(``on``, ``handle_request``, ``send``, ``generate_id``, ``eio_sid_from_sid``,
``sid_from_eio_sid``, ``disconnect``, ``close``; ``engineio.payload.Payload`` and the packet
class decoding a message) are documented or public. A POST body read here is handed to
``handle_request`` in a :class:`ReadRequest`, the request with its body already read (Engine.IO's
aiohttp driver reads the request's attributes and ``content``).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import socketio
from aiohttp import HttpVersion11, web
from engineio import packet as eio_packet
from engineio import payload as eio_payload
from multidict import CIMultiDict, CIMultiDictProxy
from socketio import packet as sio_packet

from handlers.errors import to_http
from handlers.http_common import (
    BODY_READ_TIMEOUT_S,
    POLL_OVERLAP,
    POST_OVERLAP,
    FrontAnswer,
    client_address,
    continue_body,
)
from handlers.log_throttle import LogThrottle
from handlers.held_bytes import HeldBytes
from handlers.write_deadline import WriteDeadline
from protocol import wire_json
from protocol.errors import CodedError, ErrorCode
from server.random_ids import IDS
from server.transport.accept import ConnectionPlaces, address_full
from server.transport.contract import Commit, ListeningSite, Outlet, Packet, end_sessions_at_shutdown
from server.transport.flushing import polled_out
from server.transport.leanws import opening_refusal
from server.transport.messages import (
    MAX_ATTACHMENTS,
    NO_ATTACHMENT,
    Error,
    Header,
    MalformedMessage,
    event_name,
    malformed,
    payload_of,
    refusal,
    refusal_packet,
    reserved,
    shaped_connect_error,
    size_of,
    too_large,
)
from server.transport.origins import SameOrigin
from server.transport.rooms import client_manager
from server.transport.stock_deadline import WebSocketDeadlines
from server.transport.stock_garbage import EndedSessions
from server.transport.stock_site import StockSite, hand_over

log = logging.getLogger(__name__)
# Hostile clients can send malformed messages by the thousand: one traceback per cause, then
# counts; at INFO, a client's mistake being no fault of the server.
_MALFORMED_LOG = LogThrottle(log, level=logging.INFO)
# Engine.IO's tracebacks of the server's own failures (a handler's, a service task's).
_SERVER_LOG = LogThrottle(log, level=logging.ERROR)
# Engine.IO's tracebacks that a client causes: a WebSocket frame that is no Engine.IO packet.
_CLIENT_CAUSED = frozenset({"Unknown receive error"})
# What Engine.IO's _log_error_once appends to the first occurrence of each of its messages.
_ONCE_SUFFIX = " (further occurrences of this error will be logged with level INFO)"
# Socket.IO v5 BINARY_EVENT and BINARY_ACK: a header whose attachments follow as messages of their own.
_BINARY_TYPES = ("5", "6")
# The disconnect reason of a client cut for not taking its packets (a label of
# sessionhub_connections_closed_total, as on the fast lane).
SLOW_CLIENT = "slow client"


class WirePacket(sio_packet.Packet):
    """Socket.IO packets encoded with :mod:`protocol.wire_json` (python-socketio's documented
    ``serializer`` hook takes a packet class; its ``json`` attribute is what packets encode and
    decode with)."""

    json = wire_json


class EngineLog:
    """python-engineio's logger for both lanes: a client's mistake at INFO, the server's at ERROR.

    Engine.IO calls ``error`` only through its ``_log_error_once``, for a request a client got
    wrong (an unknown or closed session, a bad transport, an old protocol version, a foreign
    origin, ...), answered 400: once per cause per server, its repeats as ``info``. At ERROR,
    every hostile client or stale tab wrote the server's errors; it is logged at INFO, the
    client's words quoted (a sid or an origin may hold a line break). Of its tracebacks, an
    undecodable WebSocket frame ("Unknown receive error") is the client's too, logged once per
    cause at INFO; a cancellation (a shutdown cutting a long-polling POST, which Engine.IO's bare
    ``except`` catches) is no failure, one debug line; any other (a handler's, a service task's)
    is the server's: at ERROR, once per cause then counted.
    """

    def debug(self, *args: Any, **kwargs: Any) -> None:
        pass

    # Engine.IO's warnings and infos are about what clients send (unsupported methods, unknown
    # sids, every packet received): dropped, so that a client cannot flood the log.
    info = warning = debug

    def error(self, message: str, *args: Any, **kwargs: Any) -> None:
        text = (message % args if args else message).removesuffix(_ONCE_SUFFIX)
        log.info("engineio refused a client's request: %r", text)

    def exception(self, message: str, *args: Any, **kwargs: Any) -> None:
        exc = sys.exc_info()[1]
        text = "engineio: " + (message % args if args else message)
        if exc is None:
            log.error("%s", text)
        elif isinstance(exc, asyncio.CancelledError):
            log.debug("%s: cancelled (the server is stopping)", text)
        elif message in _CLIENT_CAUSED:
            _MALFORMED_LOG.exception(text, exc)
        else:
            _SERVER_LOG.exception(text, exc)


def undecodable(exc: ValueError) -> asyncio.CancelledError:
    """What a WebSocket that sent a frame that is no Engine.IO packet ends with (its session is
    ended by the caller).

    python-engineio decodes a frame outside its handler's ``try``: an empty frame, or one whose
    type is not a digit, raises out of ``handle_request`` after the 101, and aiohttp logged it
    at ERROR ("Error handling request", a traceback), a client's mistake as the server's error.
    Logged at INFO once per cause; a CancelledError is how aiohttp drops a connection quietly
    (the fast lane ignores such a frame and keeps the connection).
    """
    _MALFORMED_LOG.exception("engineio: a WebSocket frame that is no Engine.IO packet", exc)
    return asyncio.CancelledError()


def _ignore_sent(messages: int, size: int) -> None:
    """The default count of sent messages: nobody counts."""


def _ignore_refused(reason: str) -> None:
    """The default count of refused connections: nobody counts."""


@dataclass(slots=True)
class Opening:
    """A place taken for a new Engine.IO session by the request that opens it (a GET without
    ``sid``); ``sid`` is the session that took it over, once Engine.IO's connect event ran;
    ``websocket`` the request's connection when it opens a WebSocket (served in that request)."""

    address: str
    sid: str | None = None
    websocket: asyncio.BaseTransport | None = None


# The opening request's place, seen by Engine.IO's connect event: Engine.IO runs that event
# inside the request's handler (and a task it would start instead copies this context).
_OPENING: ContextVar[Opening | None] = ContextVar("sessionhub_stock_opening", default=None)


class AddressPlaces:
    """Open Engine.IO sessions per client address, at most ``limit`` each."""

    __slots__ = ("address_of", "limit", "open")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, int] = {}  # address -> places taken (never 0: popped instead)
        self.address_of: dict[str, str] = {}  # Engine.IO sid -> the address its place is counted on

    def full(self, address: str) -> bool:
        return self.open.get(address, 0) >= self.limit

    def take(self, address: str) -> None:
        self.open[address] = self.open.get(address, 0) + 1

    def give_back(self, address: str) -> None:
        left = self.open.pop(address) - 1
        if left > 0:
            self.open[address] = left

    def hold(self, sid: str, address: str) -> None:
        """The session ``sid`` keeps the place taken on ``address`` until :meth:`leave`."""
        self.address_of[sid] = address

    def leave(self, sid: str) -> None:
        address = self.address_of.pop(sid, None)
        if address is not None:
            self.give_back(address)


class Backlog:
    """Bytes this lane put on a long-polling session's queue that wait for the client's next poll.

    From public API only: each poll takes the whole queue, first in, first out, so of the
    packets put on it only the last ``qsize()`` are still waiting (Engine.IO's own, a PING or a
    NOOP, make the count keep as many older packets besides: a bound a few packets high).
    """

    __slots__ = ("cut", "sizes", "total")

    def __init__(self) -> None:
        self.sizes: collections.deque[int] = collections.deque()
        self.total = 0
        self.cut = False

    def add(self, size: int, waiting: int) -> int:
        """Count a packet just put on a queue now ``waiting`` long; the bytes still waiting."""
        sizes = self.sizes
        sizes.append(size)
        self.total += size
        while len(sizes) > waiting:
            self.total -= sizes.popleft()
        return self.total


@dataclass(slots=True)
class PendingBinary:
    """A binary Socket.IO message (a header and its attachments) held until its last attachment
    arrives, so that python-socketio is handed only whole messages within ``max_payload_bytes``
    (it keeps a message's attachments as they come, however many the header declares)."""

    text: str  # the header, as received
    packet: Any  # the header decoded by the server's packet class (namespace, id, attachment_count)
    size: int  # bytes so far: the header's and the attachments'
    parts: list[str | bytes]


class ReadBody:
    """A request body already read, read again the way python-engineio's aiohttp driver reads
    one (``request.content.read(n)``)."""

    __slots__ = ("body",)

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def read(self, n: int = -1) -> bytes:
        taken = self.body if n < 0 else self.body[:n]
        self.body = self.body[len(taken) :]
        return taken


class ReadRequest:
    """An aiohttp request whose body the lane has read already, handed to Engine.IO's documented
    ``handle_request``: everything is the request's, but the body is read from what was read."""

    def __init__(self, request: web.Request, body: bytes) -> None:
        self._request = request
        self._body = body
        self.content = ReadBody(body)
        # Engine.IO reads as many bytes as Content-Length says: a chunked body's, read here,
        # is announced so (it read none of it).
        headers = CIMultiDict(request.headers)
        headers.popall("Transfer-Encoding", None)
        headers["Content-Length"] = str(len(body))
        self.headers = CIMultiDictProxy(headers)

    async def read(self) -> bytes:
        return self._body

    async def text(self) -> str:
        return self._body.decode("utf-8")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


async def chunked_body(content: Any, cap: int) -> bytes | None:
    """A chunked body (no Content-Length) to its end; None past ``cap`` bytes. Read as its
    Content-Length, 0, it was handed to Engine.IO empty: answered 200, its packets dropped."""
    body = bytearray()
    while piece := await content.read(cap + 1 - len(body)):
        body += piece
        if len(body) > cap:
            return None
    return bytes(body)


def engine_payload(body: bytes) -> bool:
    """Whether ``body`` is an Engine.IO payload python-engineio takes (:func:`engine_packets`)."""
    try:
        engine_packets(body)
    except Exception:  # UnicodeDecodeError, ValueError, or whatever a bad packet raises
        return False
    return True


# Packets one long-polling POST may carry. socket.io-client and python-socketio put every packet
# queued while a POST is out into the next POST, so a client that sends without waiting for acks
# (as PROTOCOL.md lets it) sends batches of any size; python-engineio decodes at most 16 of one
# payload (``Payload.max_decode_packets``), and the 17th event sent so lost the whole session, on
# both lanes and with every stock client. The body's size (1 MiB) bounds what one costs; this
# bounds the packets, as the WebSocket's run of frames that complete no message is bounded.
POST_PACKETS_MAX = 1024


class PostPayload(eio_payload.Payload):
    """Engine.IO's payload, decoding up to :data:`POST_PACKETS_MAX` packets (a documented class
    attribute: python-engineio's answer to its issue 142 is to raise it)."""

    max_decode_packets = POST_PACKETS_MAX


def allow_post_packets() -> None:
    """Let Engine.IO's own POST handler (the stock lane's) decode :data:`POST_PACKETS_MAX`
    packets too: it decodes with ``Payload`` itself, whose class attribute is the one setting."""
    eio_payload.Payload.max_decode_packets = max(eio_payload.Payload.max_decode_packets, POST_PACKETS_MAX)


def engine_packets(body: bytes | bytearray) -> list[Any]:
    """The packets of a long-polling POST's ``body``: UTF-8, at most :data:`POST_PACKETS_MAX`
    packets, every packet decodable and of a type Engine.IO has (its own POST handler
    answers 200 to anything else and drops the whole batch, or what follows a packet of type
    7 to 9: decoded, it failed as an IndexError, with a traceback, once half the batch was in).
    ValueError (or what a bad packet raises) for anything else."""
    packets: list[Any] = PostPayload(encoded_payload=body.decode("utf-8")).packets
    if any(not 0 <= packet.packet_type < len(eio_packet.packet_names) for packet in packets):
        raise ValueError("an Engine.IO packet of an unknown type")
    return packets


def json_bad_request(response: web.StreamResponse) -> web.StreamResponse:
    """Engine.IO's own 400 (a JSON string as text/plain: "Invalid session <sid>", ...) in the
    server's error shape, as every other 400 and as the fast lane answers it; else ``response``."""
    if response.status != 400 or not isinstance(response, web.Response) or response.content_type != "text/plain":
        return response
    try:
        message = json.loads(response.body) if isinstance(response.body, bytes) else None
    except ValueError:
        message = None
    if not isinstance(message, str) or message == "Bad Request":  # Engine.IO's word for "no reason given"
        message = "bad request"
    headers = {name: value for name, value in response.headers.items() if name.lower() != "content-type"}
    return bad_request(message, headers)


def bad_request(message: str, headers: dict[str, str] | None = None) -> web.Response:
    """A 400 ``invalid_payload`` as the fast lane's Engine.IO answers it (``LightEngineServer._bad_request``),
    with ``headers`` (Engine.IO's own, such as CORS) kept."""
    response = to_http(CodedError(ErrorCode.INVALID_PAYLOAD, message))
    response.headers.update(headers or {})
    return response


class StockOutlet:
    """A connection of the stock lane: packets go on its Engine.IO socket's queue."""

    __slots__ = ("server", "socket")

    def __init__(self, eio_socket: Any, server: StockSessionServer) -> None:
        self.socket = eio_socket
        self.server = server

    def send(self, packet: Packet) -> None:
        if not self.gone():
            self.socket.queue.put_nowait(eio_packet.Packet(eio_packet.MESSAGE, data=packet.text))
            self.server.queued(self.socket, len(packet.frame))

    def send_batch(self, packets: Sequence[Packet], frames: bytes) -> None:
        if self.gone():
            return
        queue = self.socket.queue
        for packet in packets:
            queue.put_nowait(eio_packet.Packet(eio_packet.MESSAGE, data=packet.text))
            self.server.queued(self.socket, len(packet.frame))

    def gone(self) -> bool:
        socket = self.socket
        return bool(socket.closed or getattr(socket, "closing", False))


class StockSessionServer(socketio.AsyncServer):
    """python-socketio's server with events run in order per connection, as the fast lane's."""

    lane: Literal["fast", "stock"] = "stock"

    def __init__(
        self,
        *,
        max_payload_bytes: int,
        slow_limit_bytes: int,
        connect_timeout_s: float = 10.0,
        max_connections_per_address: int = 1 << 30,
        max_http_connections_per_address: int = 1 << 30,
        descriptor_reserve: int | None = None,
        trust_forwarded_for: int = 0,
        held_bytes: HeldBytes | None = None,
        write_deadline: WriteDeadline | None = None,
        **kwargs: Any,
    ) -> None:
        # json: Engine.IO's own packets (OPEN) and refusals are written with it too, as on the
        # fast lane. client_manager: python-socketio's, with a client's leaving in O(its rooms).
        kwargs.setdefault("client_manager", client_manager())
        # cors_allowed_origins: the origin check of both lanes (server.transport.origins), in
        # Engine.IO's documented callable form; its own takes X-Forwarded-Proto and -Host raw.
        kwargs.setdefault("cors_allowed_origins", SameOrigin(trust_forwarded_for))
        super().__init__(async_handlers=False, serializer=WirePacket, json=wire_json, **kwargs)
        allow_post_packets()  # Engine.IO decodes the POST it is handed with its own Payload
        # Engine.IO's and Socket.IO's ids, as the fast lane draws them (server.random_ids): its
        # documented generate_id, set on the instance.
        self.eio.generate_id = IDS.next
        self.max_payload_bytes = max_payload_bytes
        self.slow_limit_bytes = slow_limit_bytes
        self.connect_timeout_s = connect_timeout_s
        self.trust_forwarded_for = trust_forwarded_for
        self.places = AddressPlaces(max_connections_per_address)
        # HTTP connections per address, and descriptors kept from clients: applied by the site
        # (server.transport.stock_site), as on the fast lane. Behind a trusted proxy every
        # connection is the proxy's, so none is counted per address then.
        self.http_places = None if trust_forwarded_for else ConnectionPlaces(max_http_connections_per_address)
        self.descriptor_reserve = descriptor_reserve
        # What an ended session leaves is garbage only a full collection frees (stock_garbage).
        self.garbage = EndedSessions()
        # A WebSocket whose client takes nothing for the write deadline is cut as a slow client.
        self.websockets = WebSocketDeadlines(write_deadline, self._cut_as_slow)
        self.eio.logger = EngineLog()
        # python-socketio's Engine.IO handlers, with this lane's checks in front of them
        # (Engine.IO's public handler registry: `handlers`, `on`).
        handlers = self.eio.handlers
        self.parse_message: Callable[[str, str | bytes], Awaitable[None]] = handlers["message"]
        self.open_session: Callable[[str, dict[str, Any]], Awaitable[Any]] = handlers["connect"]
        self.close_session: Callable[[str, Any], Awaitable[Any]] = handlers["disconnect"]
        self.eio.on("message", self.screen)
        self.eio.on("connect", self.admit)
        self.eio.on("disconnect", self.leave)
        # python-engineio pings from a task per socket that sleeps a ping interval (25 s) and
        # then looks whether its socket is still open: every session that ended left its task,
        # holding the socket, for up to 25 s (10,000 of them after a mass disconnect), past the
        # server's shutdown too. Each socket's task is kept here (Engine.IO starts it through
        # its documented start_background_task) and cancelled when the session ends (leave).
        self._start_task: Callable[..., asyncio.Task[Any]] = self.eio.start_background_task
        self.eio.start_background_task = self._socket_task
        self.timers: dict[str, asyncio.Task[Any]] = {}  # Engine.IO sid -> its ping task
        self._on_sent: Callable[[int, int], None] = _ignore_sent
        self._on_refused: Callable[[str], None] = _ignore_refused
        self._ends: set[asyncio.Task[None]] = set()  # sessions being closed (a deadline, a cut, a failed open)
        self.backlogs: dict[str, Backlog] = {}  # Engine.IO sid -> what waits in its queue
        self.binary: dict[str, PendingBinary] = {}  # Engine.IO sid -> its binary message being received
        self.skipping: dict[str, int] = {}  # Engine.IO sid -> attachments still to drop of a refused message
        self._upgrading: set[str] = set()  # Engine.IO sids with a WebSocket upgrade under way (see upgrade)
        self._polling: set[str] = set()  # Engine.IO sids with a long-poll waiting (see poll)
        self._posting: set[str] = set()  # Engine.IO sids with a long-polling POST being read (see post)

    async def shutdown(self) -> None:
        """python-socketio's, and no more collections of ended sessions' garbage."""
        self.garbage.stop()
        await super().shutdown()

    def count_with(self, sent: Callable[[int, int], None], refused: Callable[[str], None]) -> None:
        """``server.transport.contract.SocketServer.count_with``."""
        self._on_sent = sent
        self._on_refused = refused

    async def handle_request(self, request: web.Request) -> web.StreamResponse:
        """The Engine.IO route: a new session from an address that has too many is refused, a
        request routed as a WebSocket opening that is not one is a 400 (Engine.IO would answer
        a 500), a long-polling POST that is not an Engine.IO payload is a 400 that ends its
        session (:meth:`post`), and Engine.IO's own 400s are in the server's error shape."""
        if request.method == "GET" and "sid" not in request.query:
            address = client_address(request, trust_forwarded_for=self.trust_forwarded_for)
            if self.places.full(address):
                self._on_refused("per_address_limit")
                return to_http(address_full(self.eio.ping_interval + self.eio.ping_timeout))
        if request.method == "GET" and request.query.get("transport") == "websocket":
            refused = opening_refusal(request.headers, http_11=request.version == HttpVersion11)
            if refused is not None:
                return to_http(CodedError(ErrorCode.INVALID_PAYLOAD, f"not a WebSocket opening handshake: {refused}"))
        if request.method == "POST":
            return json_bad_request(await self.post(request))
        if request.method == "GET" and "sid" in request.query:
            # Engine.IO takes a GET of a session for an upgrade by its headers, whatever its query says.
            if "Upgrade" in request.headers:
                return json_bad_request(await self.upgrade(request, request.query["sid"]))
            return json_bad_request(await self.poll(request, request.query["sid"]))
        if request.method != "GET" or "sid" in request.query:
            response: web.StreamResponse = await self.eio.handle_request(request)
            return json_bad_request(response)
        # Taken now, not in the connect event: Engine.IO may yield before that event, and
        # concurrent openings must not overshoot the limit.
        websocket = request.transport if request.query.get("transport") == "websocket" else None
        opening = Opening(address, websocket=websocket)
        self.places.take(address)
        hand_over(websocket)  # counted as a session from here, no longer as an HTTP connection
        reset = _OPENING.set(opening)
        try:
            response = await self.eio.handle_request(request)
        except BaseException as exc:
            # Failed half-way (aiohttp refused the WebSocket handshake after Engine.IO opened
            # the session, or the client left): the session would otherwise linger, counted.
            if opening.sid is not None:
                self._later(self.end(opening.sid))
            if isinstance(exc, ValueError) and request.query.get("transport") == "websocket":
                raise undecodable(exc) from exc
            raise
        finally:
            _OPENING.reset(reset)
            if opening.sid is None:  # no session took the place (refused, a bad request)
                self.places.give_back(address)
            if websocket is not None:
                self.websockets.returned(opening.sid, websocket)
        return json_bad_request(response)

    async def upgrade(self, request: web.Request, eio_sid: str) -> web.StreamResponse:
        """A long-polling session's upgrade to a WebSocket: one at a time per session, and closed
        unless its probe exchange is done by the connect deadline. Engine.IO answered every
        upgrade 101 and waited for its probe for ever, so one session (one place in the
        per-address cap) held as many connections as its client opened, even once it had ended.
        Engine.IO serves the upgraded WebSocket inside this call: the session stays marked
        for its life, and Engine.IO refuses an upgrade of an upgraded session anyway."""
        if eio_sid in self._upgrading:
            return to_http(CodedError(ErrorCode.INVALID_PAYLOAD, "an upgrade of this session is already under way"))
        self._upgrading.add(eio_sid)
        deadline = asyncio.get_running_loop().call_later(
            self.connect_timeout_s, self._upgrade_deadline, eio_sid, request
        )
        websocket = request.transport
        hand_over(websocket)  # its session is counted already: no longer an HTTP connection
        self.websockets.began(eio_sid, websocket)
        try:
            response: web.StreamResponse = await self.eio.handle_request(request)
            return response
        except ValueError as exc:
            self._later(self.end(eio_sid))
            raise undecodable(exc) from exc
        finally:
            deadline.cancel()
            self._upgrading.discard(eio_sid)
            self.websockets.returned(eio_sid, websocket)

    async def poll(self, request: web.Request, eio_sid: str) -> web.StreamResponse:
        """A long-poll: one at a time per session. Engine.IO let any number wait together (each up
        to the ping interval and timeout, 45 s), so one session held as many connections as its
        client opened. No Engine.IO client sends a GET before the last one was answered."""
        if eio_sid in self._polling:
            return to_http(CodedError(ErrorCode.INVALID_PAYLOAD, POLL_OVERLAP))
        self._polling.add(eio_sid)
        try:
            response: web.StreamResponse = await self.eio.handle_request(request)
            return response
        finally:
            self._polling.discard(eio_sid)

    def _upgrade_deadline(self, eio_sid: str, request: web.Request) -> None:
        socket = self.eio.sockets.get(eio_sid)
        if (socket is None or not socket.upgraded) and request.transport is not None:
            request.transport.close()  # Engine.IO's wait for the probe ends, and its handler with it

    async def post(self, request: web.Request) -> web.StreamResponse:
        """A long-polling POST: a body that is not an Engine.IO payload (not UTF-8, too many
        packets, a bad packet) ends its session and is answered 400, as the fast lane does and
        as a WebSocket closes with 1007; python-engineio's own handler answers it 200 and drops
        the whole batch, the good packets in it too, so the client would never learn its
        messages were lost. Read here, checked, and handed to Engine.IO as read."""
        sid = request.query.get("sid", "")
        socket = self.eio.sockets.get(sid)
        length = request.content_length or 0
        if (
            socket is None
            or not socket.connected
            or socket.upgraded
            or "j" in request.query  # JSONP: Engine.IO's to judge
            or length > self.eio.max_http_buffer_size  # Engine.IO ends the session itself
        ):
            response: web.StreamResponse = await self.eio.handle_request(request)
            return response
        # One POST of a session at a time: its body (up to 1 MiB) is held while it is read, up to
        # 10 s, and any number of them ran together. No Engine.IO client overlaps its POSTs.
        if sid in self._posting:
            return to_http(CodedError(ErrorCode.INVALID_PAYLOAD, POST_OVERLAP))
        self._posting.add(sid)
        try:
            try:
                await continue_body(request)  # a client that waits for it sends its body now
                async with asyncio.timeout(BODY_READ_TIMEOUT_S):  # a trickled body holds nothing for long
                    if request.content_length is None and request.body_exists:
                        body = await chunked_body(request.content, self.eio.max_http_buffer_size)
                    else:
                        body = await request.content.readexactly(length)
            except (asyncio.IncompleteReadError, TimeoutError):  # the client sent less than it announced
                body = None
            except ConnectionResetError:
                # Reset by the client mid-body: nobody reads the answer, and it is the client's
                # doing (it was a 500 with aiohttp's "Error handling request" traceback). Answered
                # as the fast lane answers it: 200, the session kept, one debug line.
                log.debug("a long-polling POST of session %s was reset by its client mid-body", sid)
                return web.Response(text="OK", content_type="text/plain")  # Engine.IO's own 200
            if body is None or not engine_payload(body):
                await self.end(sid)
                return bad_request("bad request")
            response = await self.eio.handle_request(ReadRequest(request, body))
            return response
        finally:
            self._posting.discard(sid)

    async def admit(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        """Engine.IO's connect event: the session holds its opening's place, and must join
        namespace ``/`` within the connect deadline."""
        opening = _OPENING.get()
        if opening is not None and opening.sid is None:
            opening.sid = eio_sid
            self.places.hold(eio_sid, opening.address)
            self.websockets.began(eio_sid, opening.websocket)
        try:
            result = await self.open_session(eio_sid, environ)
        except BaseException:
            self.places.leave(eio_sid)  # Engine.IO refuses it, and sends no disconnect event
            raise
        if result is not None and result is not True:
            self.places.leave(eio_sid)
            return result
        self.backlogs[eio_sid] = Backlog()
        self.garbage.opened()
        asyncio.get_running_loop().call_later(self.connect_timeout_s, self._connect_deadline, eio_sid)
        return result

    def _socket_task(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Task[Any]:
        """Engine.IO's ``start_background_task``, keeping the task of an open socket's own
        (its ping timer: the only one Engine.IO starts on a socket) by the socket's sid; once
        the timer has queued its PING, the socket's WebSocket is looked at for the write deadline."""
        task = self._start_task(target, *args, **kwargs)
        owner = getattr(target, "__self__", None)
        sid = getattr(owner, "sid", None)
        if isinstance(sid, str) and owner is self.eio.sockets.get(sid) and not owner.closed:
            self.timers[sid] = task
            task.add_done_callback(partial(self._pinged, sid))
        return task

    def _pinged(self, sid: str, task: asyncio.Task[Any]) -> None:
        if not task.cancelled():
            self.websockets.pinged(sid)

    async def leave(self, eio_sid: str, reason: Any) -> None:
        """Engine.IO's disconnect event: the session's place is given back, its ping timer stopped."""
        timer = self.timers.pop(eio_sid, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
        self.places.leave(eio_sid)
        if reason == self.eio.reason.TRANSPORT_CLOSE and self.websockets.timed_out(eio_sid):
            reason = SLOW_CLIENT  # ended by the kernel's write timeout the deadline armed
        self.websockets.ended(eio_sid)
        self.garbage.ended()
        self.backlogs.pop(eio_sid, None)
        self.binary.pop(eio_sid, None)
        self.skipping.pop(eio_sid, None)
        await self.close_session(eio_sid, reason)

    def _connect_deadline(self, eio_sid: str) -> None:
        # An Engine.IO session that has not joined namespace "/" (never sent CONNECT, or was
        # refused) by now costs memory and a connection for nothing: close it.
        if eio_sid in self.eio.sockets and self.manager.sid_from_eio_sid(eio_sid, "/") is None:
            self._later(self.end(eio_sid))

    def _cut_as_slow(self, eio_sid: str) -> None:
        """End a session whose WebSocket's client took nothing for the write deadline (the
        deadline resets its connection)."""
        self._later(self.end(eio_sid, reason=SLOW_CLIENT))

    def _later(self, step: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(step)
        self._ends.add(task)
        task.add_done_callback(self._ends.discard)

    async def end(self, eio_sid: str, *, reason: str | None = None) -> None:
        """Close an Engine.IO session now, its pending long-poll GET or its WebSocket included.

        Not ``eio.disconnect``: it waits for the client to take the CLOSE packet, forever for a
        poller that never polls again, and leaves a silent WebSocket open until the ping timeout.
        """
        socket = self.eio.sockets.get(eio_sid)
        if socket is None:
            return
        await socket.close(wait=False, reason=reason)  # the disconnect event runs; CLOSE is queued
        self.eio.sockets.pop(eio_sid, None)  # as eio.disconnect does
        # Engine.IO's own end-of-queue mark: a pending GET answers, a WebSocket's writer sends
        # CLOSE and then closes the WebSocket.
        socket.queue.put_nowait(None)

    async def _send_packet(self, eio_sid: str, pkt: Any) -> None:
        # Every ack and emit of python-socketio passes here; encoded once more to count its
        # bytes (the stock lane is the fallback, not the one tuned for CPU).
        pkt.data = shaped_connect_error(pkt.packet_type, pkt.data)
        encoded = pkt.encode()
        parts = encoded if isinstance(encoded, list) else [encoded]
        sizes = [len(p.encode() if isinstance(p, str) else p) for p in parts]
        self._on_sent(1, sum(sizes))
        await super()._send_packet(eio_sid, pkt)
        socket = self.eio.sockets.get(eio_sid)
        if socket is not None:
            for size in sizes:  # one queued Engine.IO packet each
                self.queued(socket, size)

    def queued(self, socket: Any, size: int) -> None:
        """Count a packet of ``size`` bytes just put on ``socket``'s queue; cut a long-polling
        client loose once more than ``slow_limit_bytes`` wait for its next poll.

        Not a WebSocket: python-engineio's writer takes the whole queue at each turn and sends
        it a packet at a time, waiting on the connection's drain, so a client reading at full
        speed has a burst's bytes in the queue too, and what the client has taken is not
        visible through public API. A WebSocket that stops reading is cut by the write deadline
        instead (``server.transport.stock_deadline``): told here of every packet queued.
        """
        if socket.upgraded:
            self.backlogs.pop(socket.sid, None)
            self.websockets.queued(socket.sid)
            return
        backlog = self.backlogs.get(socket.sid)
        if backlog is None or backlog.cut or backlog.add(size, socket.queue.qsize()) <= self.slow_limit_bytes:
            return
        backlog.cut = True
        log.warning("closing a client that does not take its packets (over %d bytes queued)", self.slow_limit_bytes)
        self._later(self.end(socket.sid, reason=SLOW_CLIENT))

    async def screen(self, eio_sid: str, data: str | bytes) -> None:
        """Answer a message that will not be handled; hand the rest to python-socketio.

        As on the fast lane: a message over ``max_payload_bytes`` counts its header and every
        binary attachment, a header may declare at most ``MAX_ATTACHMENTS`` of them, a refused
        message's attachments are dropped as they arrive, and an event with a reserved name or
        that is no ``[name, ...]`` array is refused, binary or not. A binary message is held
        here (:class:`PendingBinary`) until its last attachment, then handed over whole.
        """
        if isinstance(data, bytes) and self.skipping.get(eio_sid):
            self.skipping[eio_sid] -= 1
            return
        self.skipping.pop(eio_sid, None)
        pending = self.binary.get(eio_sid)
        if pending is not None:
            await self.attachment(eio_sid, pending, data)
            return
        size = size_of(data)
        if size > self.max_payload_bytes:
            header = Header.of(data)
            self.skipping[eio_sid] = header.attachments
            await self.refuse(eio_sid, header, *too_large(self.max_payload_bytes))
            return
        if isinstance(data, str):
            if data[:1] in _BINARY_TYPES:
                if await self.binary_header(eio_sid, data, size):
                    return
            else:
                refused = refusal(data, self.max_payload_bytes)
                if refused is not None:
                    error, payload = refused
                    await self.refuse(eio_sid, Header.of(data), *error, payload=payload)
                    return
        await self.hand_over(eio_sid, [data], Header.of(data))

    async def binary_header(self, eio_sid: str, text: str, size: int) -> bool:
        """Hold a binary message's header until its attachments are in; False (nothing done)
        for one python-socketio refuses by itself (undecodable, its namespace not joined)."""
        try:
            header = self.packet_class(encoded_packet=text)
        except Exception:
            return False
        if self.manager.sid_from_eio_sid(eio_sid, header.namespace or "/") is None:
            return False
        if header.attachment_count > MAX_ATTACHMENTS:
            self.skipping[eio_sid] = header.attachment_count
            error = (ErrorCode.PAYLOAD_TOO_LARGE, f"messages are limited to {MAX_ATTACHMENTS} binary attachments")
            await self.refuse_to(eio_sid, header.namespace, header.id, error)
            return True
        if header.attachment_count == 0:
            await self.refuse_to(eio_sid, header.namespace, header.id, malformed(NO_ATTACHMENT))
            return True
        self.binary[eio_sid] = PendingBinary(text, header, size, [])
        return True

    async def attachment(self, eio_sid: str, pending: PendingBinary, data: str | bytes) -> None:
        """One more part of a held binary message (python-socketio takes any message as the
        next attachment while one is pending); the whole message goes on once complete."""
        header = pending.packet
        total = pending.size + size_of(data)
        if total > self.max_payload_bytes:
            del self.binary[eio_sid]
            self.skipping[eio_sid] = header.attachment_count - len(pending.parts) - 1
            await self.refuse_to(eio_sid, header.namespace, header.id, too_large(self.max_payload_bytes))
            return
        pending.size = total
        pending.parts.append(data)
        if len(pending.parts) != header.attachment_count:
            return
        del self.binary[eio_sid]
        if header.packet_type == sio_packet.BINARY_EVENT:
            try:
                refused = reserved(event_name(header.data))
            except MalformedMessage as exc:
                refused = malformed(exc)
            if refused is not None:
                await self.refuse_to(eio_sid, header.namespace, header.id, refused, payload_of(header.data))
                return
        await self.hand_over(eio_sid, [pending.text, *pending.parts], Header(header.namespace or "/", header.id, 0))

    async def hand_over(self, eio_sid: str, messages: list[str | bytes], header: Header) -> None:
        """Give python-socketio ``messages`` (one, or a binary header and its attachments)."""
        try:
            for message in messages:
                await self.parse_message(eio_sid, message)
        except Exception as exc:  # a message python-socketio cannot take: answered, never dropped
            _MALFORMED_LOG.exception("malformed Socket.IO message", exc)
            await self.refuse(eio_sid, header, *malformed(exc))

    async def refuse(self, eio_sid: str, header: Header, code: ErrorCode, message: str, *, payload: Any = None) -> None:
        """Answer a message that will not be handled (``server.transport.messages.refusal_packet``)."""
        await self.refuse_to(eio_sid, header.namespace, header.ack_id, (code, message), payload, connect=header.connect)

    async def refuse_to(
        self,
        eio_sid: str,
        namespace: str | None,
        ack_id: int | None,
        error: Error,
        payload: Any = None,
        *,
        connect: bool = False,
    ) -> None:
        reply = refusal_packet(self.packet_class, namespace or "/", ack_id, error, payload, connect=connect)
        if reply is not None:
            await self.eio.send(eio_sid, reply.encode())

    def screen_rate(self, over_rate: Callable[[str], bool], refuse: Callable[[str, str, Any], dict[str, Any]]) -> None:
        """Not used here: each event's guard checks the rate (``handlers.socket_router``)."""

    def pipeline(self, event: str, commit: Commit | None = None) -> None:
        """Not used here: a connection's events are handled one after another, by their handlers."""

    def outlet(self, sid: str) -> Outlet | None:
        """The connection's outlet (``server.transport.contract.SocketServer``)."""
        eio_sid = self.manager.eio_sid_from_sid(sid, "/")
        socket = self.eio.sockets.get(eio_sid) if eio_sid else None
        return StockOutlet(socket, self) if socket is not None else None

    def attach(self, app: Any, socketio_path: str = "socket.io") -> None:
        """Serve on ``app`` through :meth:`handle_request`, ending every Engine.IO session when
        ``app`` shuts down (the routes python-engineio's aiohttp driver adds, with the per-address
        check in front of its documented entry point, ``handle_request``)."""
        path = f"/{socketio_path.strip('/')}/"
        app.router.add_get(path, self.handle_request)
        app.router.add_post(path, self.handle_request)
        app.router.add_route("OPTIONS", path, self.handle_request)
        end_sessions_at_shutdown(app, self.eio.sockets)

    async def flushed(self, sid: str, bound_s: float) -> bool:
        """See ``server.transport.contract.SocketServer.flushed``."""
        return await polled_out(self.eio.sockets, self.manager.eio_sid_from_sid(sid, "/"), bound_s)

    async def disconnect(self, sid: str, namespace: str | None = None, ignore_queue: bool = False) -> None:
        """Disconnect a client, its Engine.IO session included (``/`` is the only namespace).

        The session ends with :meth:`end`, not ``eio.disconnect``: that waits until the client
        has taken every queued packet, forever for one that reads no more, and the revocation
        watcher disconnects a signed-out device's connections one after another.
        """
        eio_sid = self.manager.eio_sid_from_sid(sid, namespace or "/")
        await super().disconnect(sid, namespace=namespace, ignore_queue=ignore_queue)
        if eio_sid is not None and eio_sid in self.eio.sockets:
            await self.end(eio_sid)

    def site(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        path: str,
        idle_timeout_s: float,
        observers: list[Callable[[FrontAnswer], None]],
    ) -> ListeningSite:
        """The listening site: every request, WebSocket opens included, goes through aiohttp,
        accepted by ``server.transport.accept`` (``server.transport.stock_site``)."""
        return StockSite(
            runner, host, port, observers=observers, places=self.http_places,
            on_refused=lambda reason: self._on_refused(reason), descriptor_reserve=self.descriptor_reserve,
            lost=self.websockets.deadline.lost if self.websockets.deadline is not None else None,
        )  # fmt: skip
