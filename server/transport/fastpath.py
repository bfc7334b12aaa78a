"""The fast path: the one module that reaches into python-socketio's, python-engineio's and
aiohttp's private parts (STYLE.md item 12).

What it buys: per-connection memory (the connection taken from aiohttp after the WebSocket
handshake and served by ``server.transport.leanws``, a list-based queue, pings as timer callbacks instead
of a sleeping task per socket), acks and session events written straight to the WebSocket transport
(see ``server.transport.outlet``), events handled in order per connection (a text EVENT with its
ack without python-socketio's packet objects and layers: :meth:`SessionServer._dispatch`), and
answers instead of silent drops for oversized, malformed and reserved-name messages.

The contract, i.e. everything relied on beyond the libraries' documented API (a test in
``tests/transport/test_fastpath.py`` fails when any of it stops being in effect):

- ``engineio.AsyncServer``: ``_async`` (the driver's table; *copied* per instance, never
  written), ``create_queue()`` building each socket's queue, ``start_background_task`` being
  how ``AsyncSocket.schedule_ping`` starts ``AsyncSocket._send_ping``, ``_trigger_event``
  (``connect`` runs with the new socket already in ``sockets``).
- ``engineio.async_socket.AsyncSocket``: ``queue``, ``connected``, ``upgraded``, ``upgrading``,
  ``closed``, ``closing``, ``last_ping``, ``close(wait=, abort=)``, ``receive()``,
  ``schedule_ping()``, ``handler.__self__`` being the socket; ``handle_post_request(environ)``
  being what ``handle_request`` awaits for a long-polling POST (the body in
  ``environ["wsgi.input"]``, ``CONTENT_LENGTH`` its length), its ``EngineIOError`` answered 400
  once the session is closed while the session is still in ``sockets``, a normal return answered
  200 (:func:`_post` takes its place per socket, with
  ``engineio.payload.Payload(encoded_payload=)``); the ``websocket`` driver entry
  built as ``(handler, server)`` and awaited with the environ, its result being the HTTP answer.
- ``engineio.AsyncServer._handle_connect`` and ``handle_request`` leaving a socket whose
  WebSocket handler returned while it is still open in ``sockets``; ``_handle_connect(environ,
  "websocket")`` opening a session from an environ alone, returning the WebSocket handler's
  answer or, when a connect handler refuses, an answer dict (``status``, ``headers``,
  ``response``); ``_cors_allowed_origins(environ)`` being the origin check of
  ``handle_request`` (a handshake read by ``server.transport.front`` goes through both, see
  :meth:`LightEngineServer.upgrade`).
- ``socketio.AsyncServer``: ``_engineio_server_class``, ``_handle_eio_message``,
  ``_handle_eio_disconnect``, ``_handle_event``, ``_send_packet``, ``_binary_packet``,
  ``_handle_connect(eio_sid, namespace, data)`` handling a CONNECT packet.
- The event lane (:meth:`SessionServer._dispatch`, which does inline what python-socketio does
  for a text EVENT of namespace ``/``): ``handlers["/"][name]`` being the coroutine registered by
  ``on(name)``, called as ``handler(sid, *args)``, its ``CancelledError`` answered as a result
  ``None`` (``_trigger_event``); ``"*"`` there the catch-all; ``not_handled``; an ACK sent only
  with an ack id, with the data ``[]`` / ``list(result)`` / ``[result]`` for a result ``None`` /
  tuple / other (``_handle_event_internal``); ``packet_class(ACK, namespace="/", id=, data=)``
  encoding as ``"3<id><json of data>"`` (``json`` being :mod:`protocol.wire_json`), and as a
  BINARY_ACK (left to python-socketio) only when the data holds bytes, which JSON refuses;
  ``_binary_packet`` keyed by Engine.IO sid while a binary message is pending; an Engine.IO
  MESSAGE of text ``t`` encoding as ``"4" + t`` and ``send(sid, t)`` sending it; Engine.IO's
  handler of a message adding nothing but a log line when the Socket.IO handler raises.
- ``socketio.AsyncManager`` (:class:`server.transport.rooms.RoomIndex`, the stock lane's too,
  used here without its self-check: these are its tested versions): ``rooms[namespace][room]`` a bidict of
  sid -> eio_sid, room ``None`` holding every client and each client's own sid room;
  ``pending_connect`` / ``pending_disconnect`` (namespace -> sids) read and written only by
  ``pre_connect``, ``connect``, ``is_pre_connected``, ``is_connected``, ``pre_disconnect`` and
  ``basic_disconnect``; every join and leave going through ``basic_enter_room`` /
  ``basic_leave_room``; ``callbacks`` keyed by sid.
- aiohttp: ``web.TCPSite`` keeps its settings in ``_host``, ``_port``, ``_backlog``,
  ``_reuse_address``, ``_reuse_port`` and its listening server in ``_server`` and
  ``_bound_port`` (:class:`FrontSite` starts it), and ``runner.server`` builds a request
  handler that takes a connection through ``connection_made`` and ``data_received`` at any
  time; the request handler (``request.protocol``) keeps bytes read after an upgrade
  request in ``_message_tail``, lets go of a connection whose ``transport`` is set to None,
  and tracks it in ``_manager`` (``connection_lost``); a response whose ``prepare`` raises
  ``ConnectionResetError`` ends its handler without writing (see :func:`_take_over`); its
  ``_waiter`` is a pending future exactly while it waits for the connection's next request,
  ``_current_request`` the request being handled (or None) and ``_messages`` the parsed
  requests not handled yet, as ``(message, payload)`` pairs; ``close()`` lets it finish the
  request being handled and then close (``server.transport.front.HalfClosing``).
- asyncio (3.11): a selector socket transport keeps its read callback, a bound method of
  itself, in ``_read_ready_cb`` (a reference cycle that outlives the connection; see
  :func:`_unlink_transport`); its write flow control calls ``pause_writing`` only while
  ``_protocol_paused`` is false, and sets it first (:meth:`EngineWebSocket.watch_above` clears
  it to hear of the next step of the outbound budget).

It was tested with the versions in ``server.transport.versions.TESTED``; outside them the
server runs on the stock lane (``server.transport.stock``) instead, or refuses to start when
``SESSIONHUB_TRANSPORT=fast`` (widen a range only after ``make test`` passes on the new version).
:class:`SessionServer` implements ``server.transport.contract.SocketServer``.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import logging
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol

import engineio
import socketio
from aiohttp import HttpVersion11, web
from aiohttp.web_protocol import RequestHandler
from engineio import packet as eio_packet
from engineio.async_socket import AsyncSocket
from socketio import packet as sio_packet

from handlers.admission import TurnGate
from handlers.connection import BUDGET_KEY
from handlers.errors import to_http
from handlers.held_bytes import HeldBytes
from handlers.http_common import (
    BODY_READ_TIMEOUT_S,
    FIXED_ANSWERS,
    POLL_OVERLAP,
    POST_OVERLAP,
    FrontAnswer,
    address_of,
    client_address,
    continue_body,
)
from handlers.log_throttle import LogThrottle
from handlers.write_deadline import WriteDeadline
from protocol import order, wire_json
from protocol.errors import CodedError, ErrorCode
from server.transport.accept import LISTEN_BACKLOG, Acceptor, ConnectionPlaces, accept_on, address_full
from server.transport.contract import (
    Commit,
    Committed,
    ListeningSite,
    Outlet,
    end_sessions_at_shutdown,
    ws_frame,
)
from server.transport.engine import LightQueue
from server.transport.flushing import polled_out
from server.transport.front import Front, FrontProtocol, Upgrader, UpgradeRequest
from server.transport.messages import MAX_ATTACHMENTS as MAX_ATTACHMENTS
from server.transport.messages import (
    NO_ATTACHMENT,
    RESERVED_EVENTS,
    Error,
    event_name,
    malformed,
    payload_of,
    refusal_packet,
    reserved,
    shaped_connect_error,
    too_large,
)
from server.transport.messages import Header as _Header
from server.transport.messages import size_of as _size_of
from server.transport.leanws import (
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_PROTOCOL,
    FrameError,
    HandshakeError,
    LeanWebSocket,
    _Gathered,
    accept_key,
    opening_refusal,
    switching_protocols,
)
from server.transport.origins import SameOrigin
from server.transport.outlet import FastOutlet, direct_writer
from server.transport.rooms import RoomIndex
from server.transport.stock import EngineLog, WirePacket, engine_packets
from server.random_ids import IDS

log = logging.getLogger(__name__)

_OP_BINARY = 0x2
# A Socket.IO EVENT of namespace "/" as text, with its ack id if any (what the rate screen reads).
_EVENT_HEAD = re.compile(r"2(\d{1,18})?(?=\[)")
# The same, as the event lane takes it (SessionServer._dispatch): ASCII digits only (python-socketio
# reads any Unicode digit as part of an ack id: such a message goes its way).
_ACKED_EVENT = re.compile(r"2([0-9]{1,18})?(?=\[)")
# An Engine.IO MESSAGE holding such an EVENT, with the event's name when it is plain (what the
# pipeline screen reads: SessionServer._pipelinable).
_PIPELINED_HEAD = re.compile(r'42[0-9]{0,18}\["([A-Za-z0-9_]{1,64})"')
# Engine.IO packets a client sends as the protocol asks, never charged against its rate: the
# PONG answering the server's PING (only while one is awaited: SessionServer._message_over_rate),
# and its CLOSE. The upgrade probe (``2probe``, ``5``) never reaches the rate: see handle_prelude.
_PONG, _CLOSE = "3", "1"


# Hostile clients can send malformed frames by the thousand: one traceback per cause, then
# counts; at INFO, a client's mistake being no fault of the server.
_MALFORMED_LOG = LogThrottle(log, level=logging.INFO)


def _frame_of(message: str | bytes) -> bytes:
    if isinstance(message, bytes):
        return ws_frame(message, _OP_BINARY)
    return ws_frame(message.encode())


# The first step at which a connection's unsent bytes count in the server's outbound budget
# (OutboundBudget); each further step is twice the last, up to the slow-client limit.
OUTBOUND_FIRST_STEP_BYTES = 64 * 1024
# When the budget is nearly spent, the room each connection left open is given to grow by
# before the next check: the largest are cut to leave at least this much to each of the rest.
OUTBOUND_MIN_SHARE_BYTES = 8 * 1024
# Cuts by the budget are logged at most this often (with how many since the last line).
OUTBOUND_LOG_EVERY_S = 10.0


class OutboundHolder(Protocol):
    """A connection that holds bytes for a client: a WebSocket's unsent bytes
    (:class:`EngineWebSocket`), a long-polling session's packets waiting for its next poll
    (:class:`_PolledQueue`, told by its queue's ``on_mark``)."""

    def queued_bytes(self) -> int:
        """What it holds now."""
        ...

    def watch_above(self, mark: int) -> None:
        """Report (``OutboundBudget.grew``) once it holds more than ``mark``."""
        ...

    def cut_as_slow(self) -> None:
        """Close it as the slow-client limit does."""
        ...


class OutboundBudget:
    """Bytes queued for clients that take them slower than they are sent, across a whole server.

    Each connection may hold up to the slow-client limit (1 MiB) of unsent data: 1,000 clients
    that never read would pin a gigabyte. Past ``limit`` in all, the connections holding the most
    are cut, as the per-connection limit cuts ("slow client"), until the rest fits; everyone
    else goes on being served.

    Nothing is counted per write. A connection is counted only when its unsent bytes pass its
    mark, which asyncio's write flow control reports (``pause_writing``;
    :meth:`EngineWebSocket.watch_above`): first ``first_step``, then the next power-of-two
    step, up to the slow-client limit. It is charged its new mark, an upper bound of what it
    holds until it reports again, so the sum of the charges bounds what the counted connections
    hold. When that sum passes ``limit``, :meth:`check` reads what each of them holds: the
    largest are cut while the real total is over ``limit``, and the room left is shared out as
    the marks of the rest, so that the charges fit under ``limit`` again and any growth past
    its share reports. A connection that drains is not reported: its charge stays until it is
    lost or a check reads it. Not counted: connections holding less than ``first_step`` (a few
    KiB each when their clients read).
    """

    __slots__ = ("_logged_cuts", "_logged_s", "charged", "checks", "cuts", "first_step", "last_step", "limit", "total")

    def __init__(self, limit: int, last_step: int) -> None:
        self.limit = limit
        self.last_step = last_step  # the slow-client limit
        self.first_step = min(OUTBOUND_FIRST_STEP_BYTES, last_step)
        self.charged: dict[OutboundHolder, int] = {}
        self.total = 0  # the sum of the charges
        self.checks = 0  # for tests and logs: real sizes read, and connections cut
        self.cuts = 0
        self._logged_s = -OUTBOUND_LOG_EVERY_S
        self._logged_cuts = 0

    def _said(self, cut: int, held: int) -> None:
        """Count ``cut`` connections cut; say so at most once per :data:`OUTBOUND_LOG_EVERY_S`
        (a storm of silent clients is cut one check at a time)."""
        self.cuts += cut
        now = time.monotonic()
        if now - self._logged_s >= OUTBOUND_LOG_EVERY_S:
            log.warning(
                "outbound budget: %d clients holding the most unsent bytes closed as slow (%d held, %d allowed)",
                self.cuts - self._logged_cuts, held, self.limit,
            )  # fmt: skip
            self._logged_s, self._logged_cuts = now, self.cuts

    def step_above(self, size: int) -> int:
        """The smallest step at or above ``size`` (the slow-client limit at most)."""
        step = self.first_step
        while step < size and step < self.last_step:
            step *= 2
        return min(step, self.last_step)

    def grew(self, holder: OutboundHolder, size: int) -> None:
        """``holder`` passed a step and holds ``size`` (at most the slow-client limit)."""
        step = self.step_above(size)
        holder.watch_above(step)
        self.total += step - self.charged.get(holder, 0)
        self.charged[holder] = step
        if self.total > self.limit:
            self.check()

    def discharge(self, holder: OutboundHolder) -> None:
        """``holder`` is gone: it holds nothing any more."""
        self.total -= self.charged.pop(holder, 0)

    def check(self) -> None:
        """Read what the charged connections hold; cut the largest while it is over ``limit``
        (leaving each of the rest :data:`OUTBOUND_MIN_SHARE_BYTES` to grow by), and share
        what is left of ``limit`` among the rest as their next steps, so that the charges fit
        again and a connection that grows reports before the total can pass ``limit``."""
        self.checks += 1
        held = [(holder.queued_bytes(), holder) for holder in self.charged]
        self.charged.clear()
        self.total = 0
        counted: list[tuple[int, OutboundHolder]] = []
        for size, holder in held:
            if size > self.first_step:
                counted.append((size, holder))
            else:
                holder.watch_above(self.first_step)  # drained: counted again from the first step
        counted.sort(key=lambda pair: -pair[0])
        real = sum(size for size, _ in counted)
        cut = 0
        while cut < len(counted) and real > self.limit - (len(counted) - cut) * OUTBOUND_MIN_SHARE_BYTES:
            real -= counted[cut][0]
            cut += 1
        for _, holder in counted[:cut]:
            holder.cut_as_slow()
        if cut:
            self._said(cut, real + sum(size for size, _ in counted[:cut]))
        rest = counted[cut:]
        if not rest:
            return
        share = (self.limit - real) // len(rest)
        for size, holder in rest:
            step = min(self.step_above(size), size + share)
            holder.watch_above(step)
            self.charged[holder] = step
            self.total += step


class _PolledQueue:
    """A long-polling session's queue, what it holds for its next poll (an :class:`OutboundHolder`).

    It holds its socket weakly: the queue's callback holds this, and a socket holding a callable
    that holds it would be a cycle (``tests/transport/test_close_frees.py``)."""

    __slots__ = ("_socket", "server")

    def __init__(self, socket: AsyncSocket, server: LightEngineServer) -> None:
        self._socket = weakref.ref(socket)
        self.server = server

    def _queue(self) -> LightQueue | None:
        socket = self._socket()
        queue = socket.queue if socket is not None else None
        return queue if isinstance(queue, LightQueue) else None

    def queued_bytes(self) -> int:
        queue = self._queue()
        return queue.pending_bytes() if queue is not None and queue.sink is None else 0

    def watch_above(self, mark: int) -> None:
        queue = self._queue()
        if queue is not None:
            queue.mark = mark

    def cut_as_slow(self) -> None:
        queue = self._queue()
        if queue is not None:
            queue.cut()  # what waits is dropped now; its on_overflow cuts the socket as slow


class DirectWebSocket:
    """What python-engineio calls to serve a WebSocket: the connection is taken from aiohttp.

    Built by Engine.IO as ``(handler, server)``, where ``handler.__self__`` is the Engine.IO
    socket. It answers the opening handshake itself, hands the transport to an
    :class:`EngineWebSocket` and detaches aiohttp's request handler (:func:`_take_over`), so
    the request, its headers and its handler coroutines are freed at once instead of living as
    long as the connection.
    """

    def __init__(self, handler: Any, server: LightEngineServer) -> None:
        self.handler = handler
        self.server = server

    async def __call__(self, environ: dict[str, Any]) -> web.StreamResponse:
        eio_socket: AsyncSocket = self.handler.__self__
        server = self.server
        front: _FrontOpen | None = environ.get(FRONT_OPEN)
        request: web.Request | None = None
        if front is not None:  # checked by server.transport.front; aiohttp never saw this connection
            transport: Any = front.transport
            accept = front.accept
        else:
            request = environ["aiohttp.request"]
            transport = request.transport
            try:
                accept = accept_key(request.headers)
            except HandshakeError as exc:
                await server.drop(eio_socket)
                return to_http(CodedError(ErrorCode.INVALID_PAYLOAD, f"not a WebSocket opening handshake: {exc}"))
        if not isinstance(transport, asyncio.Transport) or transport.is_closing():
            await server.drop(eio_socket)
            return web.Response(status=400)
        if eio_socket.connected and eio_socket.upgrading:
            # One upgrade of a session at a time: each was answered 101 and waited for its probe
            # for ever, so one long-polling session (one place in the per-address cap) held as
            # many connections as its client opened, even after the session itself had ended.
            return to_http(CodedError(ErrorCode.INVALID_PAYLOAD, "an upgrade of this session is already under way"))
        ws = EngineWebSocket(transport, eio_socket, server)
        if eio_socket.connected:  # from long-polling: the probe exchange comes first
            transport.write(switching_protocols(accept))
            eio_socket.upgrading = True  # packets wait in the queue meanwhile
            ws.in_prelude = True
            # The probe exchange is the client's first words on the new connection: one that
            # has not finished it by the connect deadline is closed (the session polls on).
            asyncio.get_running_loop().call_later(server.upgrade_timeout_s, _end_prelude, ws)
        else:
            eio_socket.connected = True
            ws.start(preface=switching_protocols(accept))  # the 101 and Engine.IO's OPEN: one write
        if front is None:
            assert request is not None
            _take_over(request, ws)
        else:
            transport.set_protocol(ws)
            if front.early:  # sent before the answer (a client should not): the socket's now
                early = bytes(front.early)
                front.early.clear()
                ws.data_received(early)
        # What the connection needed from its request has been read: the rest goes with it
        # (python-socketio keeps this dict for the life of the connection).
        kept = {key: environ[key] for key in KEPT_ENVIRON if key in environ}
        environ.clear()
        environ.update(kept)
        return _TakenOver()


# The parts of a WebSocket's WSGI environ kept after its handshake.
KEPT_ENVIRON = (
    "REQUEST_METHOD", "RAW_URI", "QUERY_STRING", "REMOTE_ADDR", "HTTP_ORIGIN", "HTTP_USER_AGENT", BUDGET_KEY
)  # fmt: skip


# Environ keys of a handshake answered from server.transport.front: the connection to take over, and the
# client's address (already counted against its per-address limit).
FRONT_OPEN = "sessionhub.front_open"
FRONT_ADDRESS = "sessionhub.front_address"


class _FrontOpen:
    """A front handshake's connection, its ``Sec-WebSocket-Accept`` and what arrived after it."""

    __slots__ = ("accept", "counted", "early", "sid", "transport")

    def __init__(self, transport: asyncio.Transport, accept: str, early: bytearray) -> None:
        self.transport = transport
        self.accept = accept
        self.early = early
        self.counted = True  # in the per-address count until the connect event takes it over
        self.sid = ""  # the Engine.IO session, once the connect event has run


class _TakenOver(web.StreamResponse):
    """The answer aiohttp gets for a connection taken over: nothing is left for it to write.

    aiohttp treats the failed ``prepare`` as a client gone away and ends its handler without
    touching the connection (its transport was detached by :func:`_take_over`).
    """

    def __init__(self) -> None:
        super().__init__(status=101)

    async def prepare(self, request: web.BaseRequest) -> None:
        raise ConnectionResetError("the connection was taken over by its WebSocket")


def _take_over(request: web.Request, protocol: asyncio.Protocol) -> None:
    """Give the request's connection to ``protocol``; aiohttp's handler lets go of it.

    aiohttp private parts (the fast path's contract): the request handler's ``_message_tail``
    (bytes that came after the upgrade request), ``transport`` (None: aiohttp neither writes
    to nor closes the connection any more) and ``_manager`` (its server's list of connections,
    which must forget this one: nothing will report it lost).
    """
    handler: Any = request.protocol
    transport = request.transport
    assert transport is not None
    tail: bytes = handler._message_tail
    handler._message_tail = b""
    handler.transport = None
    manager = handler._manager
    if manager is not None:
        manager.connection_lost(handler, None)
    transport.set_protocol(protocol)
    if not transport.is_reading():
        transport.resume_reading()
    if tail:
        protocol.data_received(tail)


class EngineWebSocket(LeanWebSocket):
    """An Engine.IO socket's WebSocket: messages to the socket, its queue written through."""

    __slots__ = ("probed", "server", "socket")

    def __init__(self, transport: asyncio.Transport, socket: AsyncSocket, server: LightEngineServer) -> None:
        super().__init__(
            transport,
            max_message_bytes=server.max_http_buffer_size,
            slow_limit_bytes=server.slow_limit_bytes,
            budget=server.partial_frames,
        )
        self.socket = socket
        self.server = server
        self.probed = False
        # Below the slow-client limit, the first step of the server's outbound budget: asyncio
        # calls pause_writing() when the unsent bytes pass it (OutboundBudget.grew).
        transport.set_write_buffer_limits(high=server.outbound.first_step)

    def start(self, preface: bytes = b"") -> None:
        """Become the socket's transport: what it queued, then everything it sends, goes out here.

        ``preface`` (the handshake's answer) and what the socket queued leave in one write.
        """
        socket = self.socket
        socket.upgraded = True
        socket.sh_ws = self
        waiting: list[Any] = []
        socket.queue.attach(waiting.append)
        frames = [preface, *(_frame_of(item.encode()) for item in waiting if item is not None)]
        if len(frames) > 1 or preface:
            self.write_frame(b"".join(frames))
        if any(item is None for item in waiting):  # Engine.IO's "stop writing" was queued
            self.close()
        socket.queue.attach(functools.partial(_write_through, self))

    async def handle_message(self, message: str | bytes) -> bool | None:
        socket = self.socket
        # What the message's handling writes (a snapshot and its ack, replayed events) leaves
        # in one write when it is done.
        self.gather()
        if isinstance(message, str) and message[:2] == "42":  # a Socket.IO EVENT
            reply = self.server.screen(socket.sid, message[1:])
            if reply is not None:
                # Refused over the rate: its ack is gathered, and written by the consumer before
                # it yields (a refused message ends the connection's turn: LeanWebSocket._consume).
                if reply:
                    frame = ws_frame(b"4" + reply.encode())
                    self.write_frame(frame)
                    self.server.on_sent(1, len(frame))
                return True
            dispatch = self.server.dispatch
            if dispatch is not None and await dispatch(socket.sid, message[1:]):
                self.release()
                return None
        elif self.server.over_rate(socket, message):
            # Any other message over its connection's rate (SessionServer._message_over_rate):
            # dropped unread, counted towards the flood cut, and the next one waits as after a
            # refused event.
            return True
        try:
            await self._receive(message)
        finally:
            self.release()
        return None

    def may_pipeline(self, message: str | bytes) -> bool:
        return type(message) is str and self.server.pipelinable(self.socket.sid, message)

    def start_now(self, message: str | bytes, turn: order.Turn) -> bool:
        commit_now = self.server.commit_now
        return (
            commit_now is not None
            and type(message) is str
            and commit_now(self.socket.sid, message[1:], turn, self.turn_finished)
        )

    async def handle_pipelined(self, message: str | bytes) -> None:
        dispatch = self.server.dispatch
        if dispatch is not None and await dispatch(self.socket.sid, str(message)[1:]):
            return
        # Not the event lane's after all (it answers a malformed message the usual way): in turn.
        turn = order.pending()
        wait = turn.finish_wait() if turn is not None else None
        if wait is not None:
            await wait
        await self._receive(message)

    async def _receive(self, message: str | bytes) -> None:
        try:
            await self.socket.receive(eio_packet.Packet(encoded_packet=message))
        except engineio.exceptions.UnknownPacketError:
            pass
        except engineio.exceptions.SocketIsClosedError:
            self.close()
        except Exception:
            self.server.logger.exception("Unknown receive error")

    def handle_pong(self) -> None:
        # A PONG no PING asked for is charged (SessionServer._message_over_rate): nothing to pause
        # here (no task), but a flood of them is cut as any other.
        if not self.server.over_rate(self.socket, _PONG):
            self.socket.schedule_ping()  # all that Engine.IO does for a PONG

    def pause_writing(self) -> None:
        # The unsent bytes passed a step of the outbound budget (the transport's buffer limit):
        # counted there, or, past the slow-client limit, the client is cut -- its disconnect
        # then says "slow client", not "transport close".
        transport = self.raw_transport()
        if transport is None:
            return
        size = transport.get_write_buffer_size()
        if size <= self.slow_limit_bytes:
            self.server.outbound.grew(self, size)
            deadline = self.server.write_deadline
            if deadline is not None:  # and ended if its client takes nothing for the deadline
                deadline.watch(transport, self.cut_as_slow)
            return
        self.server.slow_cut.add(self.socket.sid)
        super().pause_writing()

    def raw_transport(self) -> asyncio.Transport | None:
        """The connection's transport (not what gathers writes for it meanwhile), or None once lost."""
        transport = self.transport
        return transport.transport if isinstance(transport, _Gathered) else transport

    def queued_bytes(self) -> int:
        """Bytes written to the connection that the client has not taken yet (``OutboundHolder``)."""
        transport = self.raw_transport()
        return transport.get_write_buffer_size() if transport is not None and not transport.is_closing() else 0

    def watch_above(self, mark: int) -> None:
        """Have :meth:`pause_writing` called once the unsent bytes pass ``mark`` (``OutboundHolder``).

        asyncio calls it once, then not again until the protocol is resumed, i.e. until the
        buffer drained below the low mark: a client that reads nothing is never resumed. So the
        transport's ``_protocol_paused`` is cleared here (the contract above): the next step is
        reported as the first was, and nothing is added to the writes themselves.
        """
        transport = self.raw_transport()
        if transport is None or transport.is_closing():
            return
        transport._protocol_paused = False  # type: ignore[attr-defined]
        transport.set_write_buffer_limits(high=mark)

    def cut_as_slow(self) -> None:
        """Close the connection as the slow-client limit does (``OutboundHolder``)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.server.slow_cut.add(self.socket.sid)
        transport.abort()  # as the limit's cut (LeanWebSocket.pause_writing); the budget logs

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Close after what is written; bytes the client still has not taken then are ended by
        the write deadline (asyncio waits for them for ever), as the slow-client limit ends them."""
        transport = self.raw_transport()
        super().close(code, reason)
        deadline = self.server.write_deadline
        if deadline is not None:
            deadline.closing(transport)

    def handle_prelude(self, message: str | bytes) -> bool:
        """The long-polling -> WebSocket probe exchange of Engine.IO's stock handler."""
        socket = self.socket
        if not self.probed:
            if message != "2probe":
                socket.upgrading = False
                raise FrameError(CLOSE_PROTOCOL, "expected the Engine.IO upgrade probe")
            self.probed = True
            self.write_frame(ws_frame(b"3probe"))
            socket.queue.put_nowait(eio_packet.Packet(eio_packet.NOOP))  # ends the pending poll
            return True
        socket.upgrading = False
        if message != "5":
            socket.upgraded = False
            raise FrameError(CLOSE_PROTOCOL, "expected the Engine.IO upgrade")
        self.start()
        return False

    def handle_lost_transport(self, transport: asyncio.BaseTransport, exc: Exception | None) -> None:
        self.server.outbound.discharge(self)
        deadline = self.server.write_deadline
        if deadline is not None and deadline.lost(transport, exc):  # the kernel's timeout came first
            self.server.slow_cut.add(self.socket.sid)  # its disconnect then says "slow client"
        # Called from inside the transport's own connection_lost step, which still uses it.
        asyncio.get_running_loop().call_soon(_unlink_transport, transport)

    def handle_closed(self) -> None:
        socket = self.socket
        if getattr(socket, "sh_ws", None) is not self:
            socket.upgrading = False  # an upgrade that did not happen: long-polling goes on
            return
        socket.queue.detach()
        self.server.close_later(socket)


def _end_prelude(ws: EngineWebSocket) -> None:
    """An upgrade whose probe exchange is still unfinished at its deadline: closed (its session
    goes on long-polling; handle_closed lets it try again)."""
    if ws.in_prelude:
        ws.close(CLOSE_POLICY, "the upgrade probe exchange did not finish in time")


def _unlink_transport(transport: asyncio.BaseTransport) -> None:
    """Break a closed transport's cycle with itself (its ``_read_ready_cb``, see the contract).

    Left alone, every closed connection's transport (with its socket object, buffers and
    address tuples) waited for a full garbage collection; 10,000 clients leaving at once left
    ~90,000 such objects for it, and a full collection holds the event loop for its whole length
    (issue 20, finding 3). Unlinked, reference counting frees the transport at once.
    """
    if transport.is_closing() and getattr(transport, "_read_ready_cb", None) is not None:
        transport._read_ready_cb = None  # type: ignore[attr-defined]


def _let_go(socket: AsyncSocket) -> None:
    """Break a closed socket's cycles (socket <-> its WebSocket, socket -> queue -> the
    queue's callbacks -> socket), so that reference counting frees the socket, its WebSocket,
    parser and queue as soon as the server forgets it, not at the next full garbage collection
    (issue 20, finding 3; see :func:`_unlink_transport`). Whoever still holds the socket (a
    handler's outlet) sees it closed and its WebSocket gone, as before."""
    if getattr(socket, "sh_ws", None) is not None:
        socket.sh_ws = None
    polled = getattr(socket, "sh_polled", None)
    if polled is not None:
        polled.server.outbound.discharge(polled)
        socket.sh_polled = None
    queue = socket.queue
    if isinstance(queue, LightQueue):
        queue.on_overflow = None
        queue.on_mark = None
        queue.sink = None


def _write_through(ws: EngineWebSocket, item: Any) -> None:
    if item is None:  # Engine.IO's "stop writing": the connection ends
        ws.close()
        return
    ws.write_frame(_frame_of(item.encode()))


# The disconnect reason of a client cut by the slow-client limit (handlers.metrics.CLOSE_REASONS).
SLOW_CLIENT = "slow client"


def _ignore_sent(messages: int, size: int) -> None:
    """The default ``LightEngineServer.on_sent``: nobody counts."""


def _ignore_refused(reason: str) -> None:
    """The default ``LightEngineServer.on_refused``: nobody counts."""


def _pipeline_nothing(eio_sid: str, message: str) -> bool:
    """The default ``LightEngineServer.pipelinable``: every message waits for the ones before it."""
    return False


def _screen_nothing(eio_sid: str, text: str) -> str | None:
    """The default ``LightEngineServer.screen``: every message is handled."""
    return None


def _never_over_rate(socket: AsyncSocket, message: str | bytes) -> bool:
    """The default ``LightEngineServer.over_rate``: no message is charged."""
    return False


# Gone sockets closed together before the loop serves anything else (see close_later): small
# enough that a batch's steps take a few milliseconds, large enough that a batch's awaits
# (Redis round trips of the disconnect handlers) overlap.
CLOSE_BATCH = 32

# At shutdown, how long the closes of gone connections still running (their disconnect handlers
# giving back what the connection held: a recording lease, a presence) get to finish before
# they are cancelled: what `serve` gives an HTTP request. Left running, one outlived its server,
# holding the app and its closed Redis client.
CLOSE_FINISH_S = 3.0

# New connections' opening steps started per loop turn (handlers.admission): Engine.IO
# handshakes, and Socket.IO CONNECTs with their JWT. At ~0.5-1 ms each, a turn holds a few
# milliseconds of each kind instead of hundreds (a burst's every step ran in one turn), and the
# loop turns between them to serve everything else; the connects are no slower in total (the
# loop is busy with them either way).
ADMIT_PER_TURN = 8


# Set on a long-polling POST whose body read was cancelled (a shutdown: aiohttp hands the read
# a CancelledError): see cut_short.
_CUT_SHORT: Any = web.RequestKey("post_cut_short", bool) if hasattr(web, "RequestKey") else "sessionhub.cut_short"


# Set on a long-polling POST refused after its session ended while its body was read (its
# connect deadline passed, its long-poll's connection dropped, its ping timed out): see _post.
_SESSION_GONE: Any = (
    web.RequestKey("post_session_gone", bool) if hasattr(web, "RequestKey") else "sessionhub.post_session_gone"
)
SESSION_GONE_MID_BODY = "the session ended while this body was read"


def cut_short(request: web.Request) -> bool:
    """Whether a request Engine.IO answered was cancelled meanwhile: its answer must not be sent.

    Engine.IO's POST handler catches everything, a cancellation too (a bare ``except``): a
    long-polling POST cut by a shutdown mid-body logged a CancelledError traceback and was
    answered 200, its body never read whole, so the client took packets it never delivered as
    sent. Cancelled, it stays so: aiohttp drops the connection unanswered, and the client's
    transport fails instead. aiohttp cancels a handler at shutdown by failing its body read
    with a CancelledError (:func:`_post` marks the request), and later its task.
    """
    task = asyncio.current_task()
    return bool(request.get(_CUT_SHORT)) or (task is not None and task.cancelling() > 0)


async def _post(socket_ref: weakref.ReferenceType[AsyncSocket], environ: dict[str, Any]) -> None:
    """A long-polling POST (:func:`_read_post`), refused once its session ended meanwhile.

    python-engineio (4.15) answers a POST whose handler raises ``EngineIOError`` only while the
    session is still among its sockets; this lane takes an ended polling session out of them at
    once (:meth:`LightEngineServer.end`). A body cut or late after its session ended (an
    anonymous one past its connect deadline, a phone whose long-poll dropped) then failed
    Engine.IO's handler itself: a 500 and an ERROR traceback per request, which anyone could
    make without a token; one that arrived whole is refused too (:func:`_read_post`). Such a
    refusal returns instead, marked on the request, and
    ``handle_request`` answers the documented 400 ``invalid_payload``; Engine.IO's 200 for it is
    never sent."""
    try:
        await _read_post(socket_ref, environ)
    except engineio.exceptions.EngineIOError:
        socket = socket_ref()
        if socket is not None and socket.server.sockets.get(socket.sid) is socket:
            raise  # the session lives: Engine.IO ends it and answers 400
        environ["aiohttp.request"][_SESSION_GONE] = True


async def _read_post(socket_ref: weakref.ReferenceType[AsyncSocket], environ: dict[str, Any]) -> None:
    """A long-polling POST: python-engineio's ``AsyncSocket.handle_post_request``, except that a
    body that is not UTF-8 or not an Engine.IO payload (too many packets, a bad packet type) is
    refused, as the WebSocket closes with 1007 or 1002: ``EngineIOError`` has Engine.IO close the
    session and answer 400. Its own swallows the error, answers 200 and drops the whole batch,
    the good packets in it too, so the client never learns its messages were lost."""
    socket = socket_ref()
    if socket is None:  # the session is gone (Engine.IO holds its sockets while they serve)
        raise engineio.exceptions.EngineIOError("no such session")
    # A chunked body (no Content-Length) is read to its end, up to the cap: read as empty, it
    # was answered 200 and its packets dropped unseen.
    declared = environ.get("CONTENT_LENGTH")
    cap = socket.server.max_http_buffer_size
    length = int(declared) if declared else cap + 1
    if length > cap and declared:
        raise engineio.exceptions.ContentTooLongError()
    # Read to its end: one read() returns what has arrived so far, and a large batch arrives in
    # many reads (python-engineio's own handler takes the first and drops the rest unseen);
    # within the deadline of every body, or a client trickling it holds the session. What an
    # unfinished body holds counts in the server's budget of unfinished WebSocket messages, as
    # theirs does: each session may hold up to 1 MiB of one, so many sessions trickling theirs
    # held as many MiB (2,000 sessions, one address's cap: 2 GB). A body that arrives whole in
    # one read, every ordinary one, is never counted.
    budget = socket.server.partial_frames
    await continue_body(environ["aiohttp.request"])  # a client that waits for it sends its body now
    reader = environ["wsgi.input"]
    body = bytearray()
    counted = 0
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_S):
            while len(body) < length:
                piece = await reader.read(length - len(body))
                if not piece:
                    if not declared:
                        break  # a chunked body's end
                    raise asyncio.IncompleteReadError(bytes(body), length)
                body += piece
                if len(body) < length:
                    budget.held += len(body) - counted
                    counted = len(body)
                    if budget.held > budget.limit:
                        raise engineio.exceptions.EngineIOError("the server holds too many unfinished bodies")
    except (asyncio.IncompleteReadError, TimeoutError) as exc:  # sent less than it announced
        raise engineio.exceptions.EngineIOError("a cut body") from exc
    except asyncio.CancelledError:
        environ["aiohttp.request"][_CUT_SHORT] = True  # Engine.IO swallows it: see cut_short
        raise
    except ConnectionResetError:
        # The client reset its connection mid-body (aiohttp's word for it): nobody reads the
        # answer, and it is the client's doing. Engine.IO logged it with a traceback ("post
        # request handler error") and answered 200; it still answers 200, with one debug line.
        log.debug("a long-polling POST of session %s was reset by its client mid-body", socket.sid)
        return
    finally:
        budget.held -= counted
    if len(body) > cap:
        raise engineio.exceptions.ContentTooLongError()
    if socket.server.sockets.get(socket.sid) is not socket:
        # Its session ended while the body came (a ping timeout, the connect deadline): nothing
        # takes its packets now, and a 200 would say they were delivered (audit "verify41").
        raise engineio.exceptions.EngineIOError(SESSION_GONE_MID_BODY)
    try:
        packets = engine_packets(body)
    except Exception as exc:  # UnicodeDecodeError, ValueError, or whatever a bad packet raises
        raise engineio.exceptions.EngineIOError("not an Engine.IO payload") from exc
    for pkt in packets:
        # An Engine.IO packet beyond the protocol's own, over its connection's rate, is dropped
        # (and counted towards the flood cut); Socket.IO messages are charged where handled.
        if pkt.packet_type != eio_packet.MESSAGE and socket.server.over_rate(socket, pkt.encode()):
            continue
        await socket.receive(pkt)


class LightEngineServer(engineio.AsyncServer):
    """Engine.IO server with :class:`LightQueue` queues, timer-driven pings and direct sends."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # A per-instance copy of the driver table: the aiohttp driver's module-level dict is
        # shared by every Engine.IO server in the process, so writing into it would hand the
        # direct WebSocket to a stock server built later.
        driver: dict[str, Any] = self._async  # type: ignore[has-type]
        self._async = {**driver, "websocket": DirectWebSocket}
        self.logger = EngineLog()
        self.slow_limit_bytes: int = 1 << 20
        self.partial_frames: HeldBytes = HeldBytes(64 << 20)  # SessionServer sets the node's
        # SessionServer sets the setting's value:
        self.outbound: OutboundBudget = OutboundBudget(256 << 20, self.slow_limit_bytes)
        self.max_per_address = 1 << 30
        self.trust_forwarded_for = 0  # trusted proxies in front (SessionServer sets the setting's)
        self.upgrade_timeout_s = 10.0  # SessionServer sets its connect deadline
        # Ends WebSockets whose client takes nothing (SessionServer sets the app's; None: none does).
        self.write_deadline: WriteDeadline | None = None
        self.admission = TurnGate(ADMIT_PER_TURN)  # opening steps per loop turn (see ADMIT_PER_TURN)
        self._cuts: set[asyncio.Task[None]] = set()
        self.slow_cut: set[str] = set()  # sessions cut as slow clients, until their disconnect
        # Sockets whose connection is gone, closed CLOSE_BATCH at a time by one task (see close_later).
        self._gone: collections.deque[AsyncSocket] = collections.deque()
        self._closer: asyncio.Task[None] | None = None
        self._per_address: dict[str, int] = {}  # open Engine.IO sessions per client address
        self._address_of: dict[str, str] = {}
        self._polling: set[str] = set()  # sessions with a long-poll waiting (one at a time)
        self._posting: set[str] = set()  # sessions with a long-polling POST being read (one at a time)
        # The server's metrics hooks (server.app.attach_bus sets them): messages and bytes sent
        # one at a time (acks, emits), and connects refused here, by reason.
        self.on_sent: Callable[[int, int], None] = _ignore_sent
        self.on_refused: Callable[[str], None] = _ignore_refused
        # SessionServer's screen of events over their connection's rate (SessionServer._screen).
        self.screen: Callable[[str, str], str | None] = _screen_nothing
        # ... and of every other message, which no handler's guard charges (SessionServer._message_over_rate).
        self.over_rate: Callable[[AsyncSocket, str | bytes], bool] = _never_over_rate
        # SessionServer's event lane (SessionServer._dispatch): True when it handled the message.
        self.dispatch: Callable[[str, str], Awaitable[bool]] | None = None
        # Whether an Engine.IO message may start before the earlier ones of its connection
        # finished (SessionServer._pipelinable; protocol.order).
        self.pipelinable: Callable[[str, str], bool] = _pipeline_nothing
        # SessionServer's commit of a pipelined event without a task (SessionServer._commit_now):
        # True when it took the message, whose turn it then finishes.
        self.commit_now: Callable[[str, str, order.Turn, Callable[[], None]], bool] | None = None

    def write_text(self, sid: str, text: str) -> bool:
        """Write a Socket.IO packet's text as one Engine.IO MESSAGE now, when the socket is an
        open WebSocket of this lane: what ``send(sid, text)`` does, without building the packet
        or a coroutine (every event's ack goes this way). False, having done nothing, otherwise:
        then ``send`` it."""
        socket = self.sockets.get(sid)
        if socket is None or socket.closed or socket.closing:
            return False
        ws = direct_writer(socket)
        if ws is None:
            return False
        frame = ws_frame(("4" + text).encode())
        ws.write_frame(frame)
        self.on_sent(1, len(frame))
        return True

    async def send_packet(self, sid: str, pkt: eio_packet.Packet) -> None:
        # Written straight to the WebSocket when nothing of the socket's is queued, so an ack
        # leaves in the same loop step as its handler's result (see server.transport.outlet).
        socket = self.sockets.get(sid)
        if socket is not None and not socket.closed and not socket.closing:
            ws = direct_writer(socket)
            if ws is not None:
                frame = _frame_of(pkt.encode())
                ws.write_frame(frame)
                if pkt.packet_type == eio_packet.MESSAGE:
                    self.on_sent(1, len(frame))
                return
        if pkt.packet_type == eio_packet.MESSAGE:
            encoded = pkt.encode()
            self.on_sent(1, len(encoded.encode() if isinstance(encoded, str) else encoded))
        await super().send_packet(sid, pkt)

    def create_queue(self, *args: Any, **kwargs: Any) -> LightQueue:
        return LightQueue(limit_bytes=self.slow_limit_bytes)

    def generate_id(self) -> str:
        # Engine.IO's and Socket.IO's ids both come from here (server.random_ids).
        return IDS.next()

    async def handle_request(self, request: web.Request) -> web.StreamResponse:
        """The Engine.IO route: a new session from an address that has too many is refused."""
        if request.method == "GET" and "sid" not in request.query:
            await self.admission.enter()  # a new session: an opening step (see ADMIT_PER_TURN)
            address = client_address(request, trust_forwarded_for=self.trust_forwarded_for)
            # No await between this check and the count in _trigger_event("connect"): the
            # handshake runs up to there without yielding, so concurrent ones cannot overshoot.
            if self._per_address.get(address, 0) >= self.max_per_address:
                self.on_refused("per_address_limit")
                return to_http(address_full(self.ping_interval + self.ping_timeout))
        if request.method == "GET" and request.query.get("transport") == "websocket":
            refusal = opening_refusal(request.headers, http_11=request.version == HttpVersion11)
            if refusal is not None:
                return to_http(CodedError(ErrorCode.INVALID_PAYLOAD, f"not a WebSocket opening handshake: {refusal}"))
        if "sid" in request.query and (
            request.method == "POST" or (request.method == "GET" and "Upgrade" not in request.headers)
        ):
            # A long-poll, or a long-polling POST: one of each at a time per session. Engine.IO
            # let any number run together (a poll waits up to the ping interval and timeout, a
            # POST's body is read for up to 10 s, up to 1 MiB of it held), so one session held
            # as many connections, and bodies, as its client opened; no Engine.IO client
            # overlaps its GETs, nor its POSTs.
            sid = request.query["sid"]
            running, overlap = (
                (self._polling, POLL_OVERLAP) if request.method == "GET" else (self._posting, POST_OVERLAP)
            )
            if sid in running:
                return to_http(CodedError(ErrorCode.INVALID_PAYLOAD, overlap))
            running.add(sid)
            try:
                polled: web.StreamResponse = await super().handle_request(request)
            finally:
                running.discard(sid)
            if cut_short(request):
                raise asyncio.CancelledError
            if request.get(_SESSION_GONE):
                return to_http(CodedError(ErrorCode.INVALID_PAYLOAD, SESSION_GONE_MID_BODY))
            if request.method == "GET" and request.transport is None:
                # The client closed or reset this poll's connection while it waited: the packets
                # it was answered with go nowhere. Its session ends, so that its client resumes
                # from its offset in a new one; a client that sent its next poll in the same
                # session went on with those events missing, and no sign of it.
                log.debug("session %s: its long-poll's connection closed before its answer", sid)
                await self.end(sid)
            return polled
        response: web.StreamResponse = await super().handle_request(request)
        return response

    def _bad_request(self, message: str | None = None) -> dict[str, Any]:
        # Engine.IO's own refusals ("Invalid session <sid>", ...) are a JSON string as text/plain:
        # answered in the server's error shape instead, as every other 400.
        body = {"error": ErrorCode.INVALID_PAYLOAD.value, "message": message or "bad request"}
        return {
            "status": "400 BAD REQUEST",
            "headers": [("Content-Type", "application/json; charset=utf-8")],
            "response": json.dumps(body).encode(),
        }

    def upgrade(self, request: UpgradeRequest, transport: asyncio.Transport, early: bytearray) -> bool:
        """Open a session for a handshake read by ``server.transport.front``; False leaves it to aiohttp.

        The checks of :meth:`handle_request` and Engine.IO's own, made here without a request
        object: a client over its per-address limit, or an origin Engine.IO would refuse, goes
        the normal way, which answers it. The rest of the handshake is Engine.IO's, in a task;
        what the connection receives meanwhile waits in ``early`` (no pause and resume of
        reading: two epoll changes per connection).
        """
        headers = request.headers
        address = address_of(request.peer, headers.get("X-Forwarded-For", ""), self.trust_forwarded_for)
        if self._per_address.get(address, 0) >= self.max_per_address:
            return False
        environ = request.environ(self.trust_forwarded_for)
        origin = environ.get("HTTP_ORIGIN")
        if origin and self.cors_allowed_origins != []:
            allowed = self._cors_allowed_origins(environ)
            if allowed is not None and origin not in allowed:
                return False
        # Counted now, not in the connect event: handshakes between here and their task's
        # first step must not overshoot the limit.
        self._per_address[address] = self._per_address.get(address, 0) + 1
        front = _FrontOpen(transport, request.accept, early)
        environ[FRONT_OPEN] = front
        environ[FRONT_ADDRESS] = address
        task = asyncio.ensure_future(self._open_front(environ, front, address))
        self._cuts.add(task)
        task.add_done_callback(self._cuts.discard)
        return True

    async def _open_front(self, environ: dict[str, Any], front: _FrontOpen, address: str) -> None:
        transport = front.transport
        try:
            await self.admission.enter()
            if transport.is_closing():  # gone while it waited for its turn: nothing to open
                return
            answer = await self._handle_connect(environ, "websocket")
        except Exception:
            log.exception("opening a WebSocket session")
            answer = None
            opened = self.sockets.get(front.sid) if front.sid else None
            if opened is not None and getattr(opened, "sh_ws", None) is None:
                await self.drop(opened)  # registered, never served: not left in `sockets`
        finally:
            if front.counted:  # the connect event never ran: the count is given back
                front.counted = False
                self._release_address(address)
        if isinstance(answer, _TakenOver):
            return
        if isinstance(answer, dict) and not transport.is_closing():  # refused by a connect handler
            transport.write(_http_answer(answer))
            transport.close()
        else:
            transport.abort()

    async def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "connect":
            sid, environ = args[0], args[1]
            socket = self.sockets.get(sid)
            if socket is not None:
                # A weak reference: the socket's queue holding a callable that holds the socket
                # was a cycle, freed only by a full collection: _let_go breaks it when a WebSocket
                # closes, but a long-polling session's end goes through python-engineio's own
                # close (~27 objects left per polling session; the fourth field audit).
                socket.queue.on_overflow = functools.partial(self._cut_if_there, weakref.ref(socket))
            front: _FrontOpen | None = environ.get(FRONT_OPEN)
            if socket is not None and front is None and "transport=websocket" not in environ.get("QUERY_STRING", ""):
                # Only a session opened by long-polling takes POSTs. A WebSocket's socket is left
                # as it is: an instance attribute shadowing a method of every socket cost the fan-out
                # to ten members ~6% of its CPU (bench/ab.py, 1000x10). A weak reference: the socket
                # holding a callable that holds it would be a cycle (tests/transport/test_close_frees.py).
                socket.handle_post_request = functools.partial(_post, weakref.ref(socket))
                # What waits for its next poll counts in the outbound budget, as a WebSocket's
                # unsent bytes do (from the budget's first step; OutboundBudget).
                holder = socket.sh_polled = _PolledQueue(socket, self)
                socket.queue.mark = self.outbound.first_step
                socket.queue.on_mark = functools.partial(self.outbound.grew, holder)
            if front is not None and front.counted:
                front.counted, front.sid = False, sid  # counted by upgrade(): now the session's
                self._address_of[sid] = environ[FRONT_ADDRESS]
            else:
                address = client_address(environ["aiohttp.request"], trust_forwarded_for=self.trust_forwarded_for)
                self._address_of[sid] = address
                self._per_address[address] = self._per_address.get(address, 0) + 1
        elif event == "disconnect":
            self._forget_address(args[0])
            polled = getattr(self.sockets.get(args[0]), "sh_polled", None)
            if polled is not None:
                self.outbound.discharge(polled)
            if args[0] in self.slow_cut:
                self.slow_cut.discard(args[0])
                args = (args[0], SLOW_CLIENT, *args[2:])
            # The pending ping timer holds the socket (its queue, its WebSocket) until it
            # fires, up to a ping interval after the client left: let go of it now.
            gone = self.sockets.get(args[0])
            for timer in (getattr(gone, "sh_ping", None), getattr(gone, "sh_pong", None)):
                if timer is not None:
                    timer.cancel()
        result = await super()._trigger_event(event, *args, **kwargs)
        if event == "connect" and result is not None and result is not True:
            self._forget_address(args[0])  # refused: Engine.IO drops the socket without a disconnect
        return result

    def _forget_address(self, sid: str) -> None:
        address = self._address_of.pop(sid, None)
        if address is not None:
            self._release_address(address)

    def _release_address(self, address: str) -> None:
        left = self._per_address.pop(address) - 1
        if left > 0:
            self._per_address[address] = left

    async def end(self, sid: str) -> None:
        """Close one session now, its TCP connection included (a client may ignore CLOSE)."""
        socket = self.sockets.get(sid)
        if socket is None:
            return
        ws = getattr(socket, "sh_ws", None)
        if ws is None and not socket.upgraded:
            # A long-polling session: its CLOSE waits in its queue for the client's next GET,
            # and python-engineio's close waits for that queue to be taken. A client that polls
            # no more (a phone asleep) held the caller until its ping timed out: a revocation
            # watch signing out devices one after another waited seconds on each. Not waited
            # for: a GET already waiting still takes the CLOSE; a later one is told the session
            # is gone (400).
            await socket.close(wait=False, reason=self.reason.SERVER_DISCONNECT)
            self.sockets.pop(sid, None)
            return
        await self.disconnect(sid)
        if ws is not None and ws.transport is not None:
            ws.transport.close()  # after the CLOSE packet already written to it

    async def drop(self, socket: AsyncSocket) -> None:
        """Close and forget a socket whose WebSocket never opened (a refused handshake)."""
        await socket.close(wait=False, abort=True, reason=self.reason.TRANSPORT_ERROR)
        self.sockets.pop(socket.sid, None)
        _let_go(socket)

    def close_later(self, socket: AsyncSocket) -> None:
        """Close a socket whose connection is gone, soon (its disconnect handlers await).

        Not a task each: when thousands of clients leave at once (a network blip, a proxy
        restart) their clean-up would fill the loop's ready queue and hold every other request
        (``/healthz`` went unanswered for seconds). One task closes them CLOSE_BATCH at a time
        and yields to the loop between batches, so other work keeps being served.
        """
        if socket.closed:
            self.sockets.pop(socket.sid, None)
            _let_go(socket)
            return
        self._gone.append(socket)
        if self._closer is None or self._closer.done():
            self._closer = asyncio.ensure_future(self._close_gone_batches())

    async def _close_gone_batches(self) -> None:
        gone = self._gone
        while gone:
            batch = [gone.popleft() for _ in range(min(CLOSE_BATCH, len(gone)))]
            results = await asyncio.gather(*(self._close_gone(socket) for socket in batch), return_exceptions=True)
            for result in results:  # one socket's failure must not keep the others open
                if isinstance(result, Exception):
                    log.error("closing a gone Engine.IO session failed", exc_info=result)
            await asyncio.sleep(0)  # what arrived meanwhile (a /healthz, an event) runs now

    async def _close_gone(self, socket: AsyncSocket) -> None:
        try:
            await socket.close(wait=False, abort=True, reason=self.reason.TRANSPORT_CLOSE)
        finally:
            if socket.closed:
                self.sockets.pop(socket.sid, None)
                _let_go(socket)

    async def shutdown(self) -> None:
        """Stop Engine.IO's background work, then let the closes still running (gone
        connections', slow clients' cuts) finish within CLOSE_FINISH_S; cancel what is left."""
        await super().shutdown()
        running = [task for task in (self._closer, *self._cuts) if task is not None and not task.done()]
        if not running:
            return
        _, late = await asyncio.wait(running, timeout=CLOSE_FINISH_S)
        if late:
            log.warning("stopping with %d gone connections not closed after %.0f s", len(late), CLOSE_FINISH_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    def _cut_if_there(self, socket_ref: weakref.ref[AsyncSocket]) -> None:
        socket = socket_ref()
        if socket is not None:
            self._cut(socket)

    def _cut(self, socket: AsyncSocket) -> None:
        """Disconnect a client whose queue outgrew the slow-client limit (one that stopped
        polling, or a WebSocket whose queued packets pile up)."""
        log.warning("closing a client that does not take its packets (over %d bytes queued)", self.slow_limit_bytes)
        self.slow_cut.add(socket.sid)  # its disconnect then says "slow client", not "transport close"
        ws = getattr(socket, "sh_ws", None)
        if ws is not None and ws.transport is not None:
            ws.transport.abort()  # the WebSocket handler then closes the socket itself
            return
        task = asyncio.ensure_future(socket.close(wait=False, abort=True))
        self._cuts.add(task)
        task.add_done_callback(self._cuts.discard)

    def start_background_task(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # AsyncSocket.schedule_ping starts `_send_ping`, which only sleeps one interval and then
        # queues a PING: a timer does the same without keeping a task alive per connection.
        if getattr(target, "__func__", None) is AsyncSocket._send_ping and not args and not kwargs:
            socket: AsyncSocket = target.__self__  # type: ignore[attr-defined]
            socket.sh_ping = asyncio.get_running_loop().call_later(self.ping_interval, _ping, socket)
            return None
        return super().start_background_task(target, *args, **kwargs)


def _event_array(text: str) -> list[Any] | None:
    """An EVENT's ``[name, *args]`` from its JSON text, when the name is one a handler of its own
    may have (not reserved); None for anything else, which goes the usual way."""
    data = _named_array(text)
    return None if data is None or data[0] in RESERVED_EVENTS else data


def _named_array(text: str) -> list[Any] | None:
    """An EVENT's ``[name, *args]`` from its JSON text, reserved names included; None when it is
    not one."""
    try:
        data = wire_json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        return None
    return data


def _root_event(data: str | bytes) -> bool:
    """Whether a Socket.IO message is an EVENT (text or binary) of namespace ``/``: one that a
    handler's guard, or its refusal, charges against the connection's rate."""
    return isinstance(data, str) and data[:1] in ("2", "5") and _Header.of(data).namespace == "/"


def _disconnect_of_root(data: str | bytes) -> bool:
    """Whether a Socket.IO message is a DISCONNECT of namespace ``/``."""
    return isinstance(data, str) and data[:1] == "1" and _Header.of(data).namespace == "/"


def _http_answer(answer: Mapping[str, Any]) -> bytes:
    """An Engine.IO answer dict (``status``, ``headers``, ``response``) as a closing HTTP/1.1 response."""
    body = answer.get("response") or b""
    body = body if isinstance(body, bytes) else str(body).encode()
    lines = [f"HTTP/1.1 {answer['status']}"]
    lines += [f"{name}: {value}" for name, value in answer.get("headers") or [] if name.lower() != "content-length"]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


# After the ping timeout, how much later a socket's PONG is looked for (the check is ``>``).
PONG_GRACE_S = 0.05


def _ping(socket: AsyncSocket) -> None:
    if not socket.closing and not socket.closed:
        socket.last_ping = sent = time.time()
        socket.queue.put_nowait(eio_packet.Packet(eio_packet.PING))
        # Its PONG is looked for when due, not at Engine.IO's sweep, which visits each socket
        # once per ping timeout: a client gone without a FIN (a phone out of coverage, a laptop
        # shut) was held 65-75 s, not the 45 s of the ping interval and timeout, and a
        # recording it held showed "recording" as long.
        loop = asyncio.get_running_loop()
        socket.sh_pong = loop.call_later(socket.server.ping_timeout + PONG_GRACE_S, _pong_due, socket, sent)
        ws: EngineWebSocket | None = getattr(socket, "sh_ws", None)
        deadline = ws.server.write_deadline if ws is not None else None
        if deadline is not None:
            # Once a ping interval (never per event): a client that stopped reading but answers
            # pings unasked looks alive, so the bytes waiting for it are what tells.
            assert ws is not None
            deadline.watch_if_waiting(ws.raw_transport(), ws.cut_as_slow)


def _pong_due(socket: AsyncSocket, sent: float) -> None:
    """No PONG since the PING sent at ``sent``: Engine.IO's own check closes the socket (the
    same close its sweep would make, only on time). A PONG clears ``last_ping``, a later PING
    replaces it: either way this one is answered or superseded, and nothing is done."""
    if socket.closed or socket.closing or socket.last_ping != sent:
        return
    task = asyncio.ensure_future(socket.check_ping_timeout())
    task.add_done_callback(_quietly)


def _quietly(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:  # closed meanwhile (SocketIsClosedError)
        log.debug("a ping timeout's close: %r", task.exception())


class SessionServer(socketio.AsyncServer):
    """Socket.IO server on :class:`LightEngineServer`: events in order per connection, a payload
    cap that answers instead of disconnecting, and reserved event names refused.

    Engine.IO's own ``max_http_buffer_size`` stays as the hard limit (it closes the
    connection); the softer ``max_payload_bytes`` below it answers the client and drops only
    the message.
    """

    lane: Literal["fast", "stock"] = "fast"

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
        outbound_budget_bytes: int = 256 << 20,
        write_deadline: WriteDeadline | None = None,
        **kwargs: Any,
    ) -> None:
        # async_handlers=False: each connection's events run one after another, in the order
        # they arrived, inside that connection's reader (Engine.IO already runs its message
        # handler inline). A slow handler holds back its own connection only; a client that
        # sends faster than it is served is held by TCP flow control, not by a growing queue.
        # json: Engine.IO encodes its OPEN packet with it too (python-engineio keeps it on its
        # Packet class, for every Engine.IO server of the process: the output is the same JSON).
        kwargs.setdefault("client_manager", RoomIndex())
        # The origin check of both lanes (server.transport.origins), Engine.IO's own being
        # X-Forwarded-Proto and X-Forwarded-Host taken raw.
        kwargs.setdefault("cors_allowed_origins", SameOrigin(trust_forwarded_for))
        super().__init__(async_handlers=False, serializer=WirePacket, json=wire_json, **kwargs)
        self.max_payload_bytes = max_payload_bytes
        self.eio.slow_limit_bytes = slow_limit_bytes
        self.eio.max_per_address = max_connections_per_address
        if held_bytes is not None:  # the node's one budget, its routes' bodies counted in it too
            self.eio.partial_frames = held_bytes
        self.eio.outbound = OutboundBudget(outbound_budget_bytes, slow_limit_bytes)
        self.eio.write_deadline = write_deadline
        self.eio.trust_forwarded_for = trust_forwarded_for
        # Counted at accept time, on the connection's peer: behind a trusted proxy that is the
        # proxy for every client, so connections are not counted then (the proxy caps its own).
        self.http_places = None if trust_forwarded_for else ConnectionPlaces(max_http_connections_per_address)
        # Applied behind a proxy too: a descriptor is one whoever the client is.
        self.descriptor_reserve = descriptor_reserve
        self.connect_timeout_s = connect_timeout_s
        self.eio.upgrade_timeout_s = connect_timeout_s
        self._deadlines: set[asyncio.Task[None]] = set()
        self._binary_bytes: dict[str, int] = {}  # bytes so far of each pending binary message
        self._skipping: dict[str, int] = {}  # attachments still to drop of each refused message
        self._over_rate: Callable[[str], bool] | None = None
        self._refuse_rate: Callable[[str, str, Any], dict[str, Any]] | None = None
        self._charge: Callable[[str], bool] | None = None  # see charge_with
        self._pipelined: set[str] = set()
        self._commits: dict[str, Commit] = {}  # pipelined events whose commit goes without a task
        self.eio.dispatch = self._dispatch

    def _engineio_server_class(self) -> type:
        return LightEngineServer

    def count_with(self, sent: Callable[[int, int], None], refused: Callable[[str], None]) -> None:
        """``server.transport.contract.SocketServer.count_with``: Engine.IO's send path counts."""
        self.eio.on_sent = sent
        self.eio.on_refused = refused

    def screen_rate(self, over_rate: Callable[[str], bool], refuse: Callable[[str, str, Any], dict[str, Any]]) -> None:
        """``server.transport.contract.SocketServer.screen_rate``: see :meth:`_screen`."""
        self._over_rate, self._refuse_rate = over_rate, refuse
        self.eio.screen = self._screen

    def _screen(self, eio_sid: str, text: str) -> str | None:
        """The answer to a Socket.IO message (``text``, an EVENT) over its connection's rate --
        its ACK's text, or "" when it asked for none -- or None to handle it as usual.

        Asked by the connection's WebSocket before Engine.IO or python-socketio see the message
        (:meth:`EngineWebSocket.handle_message`): a connection with tokens left costs a dict
        lookup and a comparison. One over its rate has its message parsed only for the event's
        name, ack id and ``seq``: no packet objects, no handler, no payload check, no Redis
        (issue 20, finding 4). Anything unusual (another namespace, a malformed or oversize
        message, a reserved name) is refused all the same, as an unknown event without a
        ``seq``, unparsed: such messages reached no guard, so a flood of them was never
        refused nor cut (one connection sent 12,660 16 KB malformed ones in 14 s).
        """
        over_rate, refuse = self._over_rate, self._refuse_rate
        if over_rate is None or refuse is None:
            return None
        sid = self.manager.sid_from_eio_sid(eio_sid, "/")
        if sid is None or not over_rate(sid):
            return None
        match = _EVENT_HEAD.match(text)
        ack_id = match.group(1) if match is not None else None
        event: list[Any] = ["", None]  # refused as an unknown event, without a seq
        if match is not None and _size_of(text) <= self.max_payload_bytes:
            event = _named_array(text[match.end() :]) or event
        if event[0] in RESERVED_EVENTS:
            return self._refuse_reserved(sid, ack_id, event)
        ack = refuse(sid, event[0], event[1] if len(event) > 1 else None)
        if ack_id is None:
            return ""  # without an ack id, a refused event is not answered (as its guard does)
        return "3" + ack_id + wire_json.dumps([ack])

    def _refuse_reserved(self, sid: str, ack_id: str | None, event: list[Any]) -> str:
        """The answer (as :meth:`_screen`'s) to an event with a reserved name over its connection's
        rate: its usual refusal, ``unknown_event`` (a name no client may send, however fast),
        counted as a refusal over the rate all the same."""
        if self._charge is not None:
            self._charge(sid)
        error = reserved(event[0])
        assert error is not None
        reply = refusal_packet(
            self.packet_class, "/", None if ack_id is None else int(ack_id), error, payload_of(event)
        )
        return "" if reply is None else str(reply.encode())

    def charge_with(self, charge: Callable[[str], bool]) -> None:
        """``handlers.socket_router.MessageCharging``: every message no handler's guard sees spends
        a token through ``charge(sid)``, False when over the rate (see :meth:`_message_over_rate`)."""
        self._charge = charge
        self.eio.over_rate = self._message_over_rate

    def _charge_eio(self, eio_sid: str) -> bool:
        """Spend a token of the connection of Engine.IO session ``eio_sid`` for a message no
        guard sees: False when over its rate (the refusal counted). One not joined to ``/`` yet
        has no bucket (its CONNECT is an opening step, held by the connect deadline): True."""
        charge = self._charge
        sid = self.manager.sid_from_eio_sid(eio_sid, "/") if charge is not None else None
        return sid is None or charge is None or charge(sid)

    def _message_over_rate(self, socket: AsyncSocket, message: str | bytes) -> bool:
        """Whether a message of ``socket`` other than a text EVENT (those go through :meth:`_screen`)
        is refused over its connection's rate, the refusal counted towards the flood cut.

        An Engine.IO packet (a PING, a NOOP, an UPGRADE once upgraded, an unasked PONG, garbage)
        spends its token here; the PONG answering the server's PING and a CLOSE are free. A
        Socket.IO message is only looked at here: its token is spent where it is handled (a
        handler's guard, or :meth:`_handle_eio_message`), so one over the rate is refused here
        and one within it goes on; a binary message's attachments count with their header.
        """
        if isinstance(message, str) and message[:1] != "4":
            if message == _CLOSE or (message == _PONG and socket.last_ping):
                return False
            return not self._charge_eio(socket.sid)
        eio_sid = socket.sid
        if eio_sid in self._binary_packet or eio_sid in self._skipping:
            return False
        if isinstance(message, str) and message[1:2] == "1" and self._leaves(eio_sid, message[1:]):
            return False  # never dropped: see _handle_eio_message
        sid = self.manager.sid_from_eio_sid(eio_sid, "/")
        over_rate, charge = self._over_rate, self._charge
        if sid is None or over_rate is None or charge is None or not over_rate(sid):
            return False
        return not charge(sid)

    def pipeline(self, event: str, commit: Commit | None = None) -> None:
        """``server.transport.contract.SocketServer.pipeline``: see :meth:`_pipelinable` and
        :meth:`_commit_now`."""
        self._pipelined.add(event)
        self.eio.pipelinable = self._pipelinable
        if commit is not None:
            self._commits[event] = commit
            self.eio.commit_now = self._commit_now

    def _pipelinable(self, eio_sid: str, message: str) -> bool:
        """Whether the Engine.IO message ``message`` may start while the earlier ones of its
        connection are handled (``protocol.order``): a Socket.IO EVENT registered as pipelined,
        of namespace ``/``, on a connection with tokens left and no binary message pending.
        Anything else waits for them, then goes its usual way -- a refusal over the rate too,
        so that its ack keeps its place."""
        match = _PIPELINED_HEAD.match(message)
        if match is None or match.group(1) not in self._pipelined:
            return False
        if eio_sid in self._binary_packet or eio_sid in self._skipping:
            return False
        sid = self.manager.sid_from_eio_sid(eio_sid, "/")
        over_rate = self._over_rate
        return sid is not None and (over_rate is None or not over_rate(sid))

    async def _dispatch(self, eio_sid: str, text: str) -> bool:
        """Handle a Socket.IO EVENT of namespace ``/`` (``text``, its packet) the way
        python-socketio would, without its packet objects and its layers; False, having done
        nothing, for anything else, which goes the usual way (and is answered there).

        Asked by the connection's WebSocket (:meth:`EngineWebSocket.handle_message`) for each
        text EVENT its rate screen let through. What python-socketio does for such a message
        (``_handle_eio_message`` -> :meth:`_handle_event` -> ``_handle_event_internal`` ->
        ``_trigger_event`` -> the handler -> ``_send_packet``) is done here inline, in the same
        order and with the same outcome: the payload cap, a connected sid, the handler
        registered for the name (``handlers["/"]``), an ack ``[result]`` written at once when an
        ack id was given, a handler's exception answered as a malformed message. Taken the usual
        way instead: a message while a binary one is pending or being skipped, one over the
        payload cap, another namespace, binary placeholders, JSON that does not parse or is not
        ``[name, ...]``, a reserved name, a name without a handler of its own (the catch-all
        answers ``unknown_event``), a sid not connected, an ack that is not JSON text (binary).
        """
        event = self._event_of(eio_sid, text)
        if event is None:
            return False
        ack_id, data, sid = event
        handler = self._event_handlers.get(data[0])
        if handler is None:
            return False
        self._binary_bytes.pop(eio_sid, None)
        try:
            try:
                result = await handler(sid, *data[1:])
            except asyncio.CancelledError:
                result = None  # as python-socketio's _trigger_event: the server is stopping
            turn = order.pending()
            if turn is not None and (wait := turn.finish_wait()) is not None:
                await wait  # a pipelined event that committed nothing: its ack keeps its place
            if ack_id is None or result is self.not_handled:
                return True
            ack = [] if result is None else list(result) if isinstance(result, tuple) else [result]
            try:
                body = wire_json.dumps(ack)
            except TypeError:  # bytes in it: a binary ACK, built by python-socketio
                await self._send_packet(
                    eio_sid, self.packet_class(sio_packet.ACK, namespace="/", id=int(ack_id), data=ack)
                )
                return True
            text = "3" + str(int(ack_id)) + body
            if not self.eio.write_text(eio_sid, text):
                await self.eio.send(eio_sid, text)
        except Exception as exc:  # as _handle_eio_message: answered, never dropped
            try:
                turn = order.pending()
                if turn is not None and (wait := turn.finish_wait()) is not None:
                    await wait
                await self._malformed(eio_sid, text, None, exc, charge=False)  # its guard charged it
            except Exception:
                self.eio.logger.exception("message async handler error")  # as Engine.IO's handler runner
        return True

    def _event_of(self, eio_sid: str, text: str) -> tuple[str | None, list[Any], str] | None:
        """A text EVENT of namespace ``/`` as the event lane takes it: (its ack id, ``[name,
        *args]``, its connection's sid), or None for anything to go the usual way (see
        :meth:`_dispatch`)."""
        if eio_sid in self._binary_packet or eio_sid in self._skipping:
            return None
        match = _ACKED_EVENT.match(text)
        if match is None or _size_of(text) > self.max_payload_bytes:
            return None
        data = _event_array(text[match.end() :])
        if data is None:
            return None
        manager = self.manager
        sid = manager.sid_from_eio_sid(eio_sid, "/")
        if sid is None or not manager.is_connected(sid, "/"):
            return None
        return match.group(1), data, sid

    def _commit_now(self, eio_sid: str, text: str, turn: order.Turn, finished: Callable[[], None]) -> bool:
        """Send the commit of a pipelined EVENT (``text``, its packet) now, without a task or a
        coroutine, and finish its ``turn`` from the reply's callback: True when the event's
        ``commit`` (``pipeline``) took it; False, having done nothing, to start its task.

        Asked by the connection's WebSocket when it starts the event's turn
        (``LeanWebSocket._start_turn``), in the loop step that read it. The rules of
        ``protocol.order`` hold as in the task: the commit leaves only once the one of the
        event before it has left (else the task waits for that); the ack, and what the guard
        does after the commit, wait for the event before it to finish (:meth:`_replied`); the
        guard's hold release runs after the ack is written (``Turn.after``, run by the
        WebSocket). ``finished`` tells the WebSocket the turn finished.
        """
        previous = turn.previous
        if previous is not None and not previous.issued:
            return False
        event = self._event_of(eio_sid, text)
        if event is None:
            return False
        ack_id, data, sid = event
        commit = self._commits.get(data[0])
        if commit is None:
            return False
        committed = commit(sid, data[1] if len(data) > 1 else None, len(data) > 2)
        if committed is None:
            return False
        self._binary_bytes.pop(eio_sid, None)
        turn.mark_issued()
        committed.future.add_done_callback(functools.partial(self._replied, eio_sid, ack_id, turn, committed, finished))
        return True

    def _replied(
        self,
        eio_sid: str,
        ack_id: str | None,
        turn: order.Turn,
        committed: Committed,
        finished: Callable[[], None],
        _: object = None,
    ) -> None:
        """A commit of :meth:`_commit_now` is answered: once the event before it has finished,
        its ack is written and its turn finished."""
        wait = turn.finish_wait()
        if wait is not None:
            wait.add_done_callback(functools.partial(self._replied, eio_sid, ack_id, turn, committed, finished))
            return
        try:
            ack = committed.answer()
            if ack_id is not None:
                # False only for a connection gone: a socket of this lane writes its queue through.
                self.eio.write_text(eio_sid, "3" + str(int(ack_id)) + wire_json.dumps([ack]))
        except Exception:  # a bug: said, and the turn still finishes (its connection goes on)
            self.eio.logger.exception("answering a committed event failed")
        finally:
            if turn.finished:  # the pipeline ended meanwhile (the server stopping)
                asyncio.get_running_loop().call_soon(committed.after_ack)
            else:
                turn.after.append((committed.after_ack, ()))
            turn.finish()
            finished()

    @property
    def _event_handlers(self) -> dict[str, Callable[..., Awaitable[Any]]]:
        handlers: dict[str, Callable[..., Awaitable[Any]]] = self.handlers.get("/", {})
        return handlers

    def outlet(self, sid: str) -> Outlet | None:
        """The connection's outlet (``server.transport.contract.SocketServer``)."""
        eio_sid = self.manager.eio_sid_from_sid(sid, "/")
        socket = self.eio.sockets.get(eio_sid) if eio_sid else None
        return FastOutlet(socket) if socket is not None else None

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
        """The listening site: WebSocket opens answered by ``server.transport.front``, the rest by aiohttp."""
        return FrontSite(
            runner, host, port, upgrader=self.eio, path=path, idle_timeout_s=idle_timeout_s, observers=observers,
            places=self.http_places, on_refused=lambda reason: self.eio.on_refused(reason),
            descriptor_reserve=self.descriptor_reserve,
        )  # fmt: skip

    def attach(self, app: Any, socketio_path: str = "socket.io") -> None:
        """Serve on ``app``, ending every Engine.IO session when ``app`` shuts down."""
        super().attach(app, socketio_path)
        end_sessions_at_shutdown(app, self.eio.sockets)

    async def flushed(self, sid: str, bound_s: float) -> bool:
        """See ``server.transport.contract.SocketServer.flushed``."""
        return await polled_out(self.eio.sockets, self.manager.eio_sid_from_sid(sid, "/"), bound_s)

    async def disconnect(self, sid: str, namespace: str | None = None, ignore_queue: bool = False) -> None:
        """Disconnect a client, its Engine.IO session and TCP connection included.

        python-socketio only leaves the namespace and trusts the client to close on the
        DISCONNECT packet; one that does not would keep its connection (and pongs) forever:
        ``/`` is the only namespace served, so nothing is left to keep it for.
        """
        eio_sid = self.manager.eio_sid_from_sid(sid, namespace or "/")
        await super().disconnect(sid, namespace=namespace, ignore_queue=ignore_queue)
        if eio_sid is not None:
            await self.eio.end(eio_sid)

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        # A Socket.IO CONNECT (its JWT verified, the connection registered) is an opening
        # step: at most ADMIT_PER_TURN of them start per loop turn, with the handshakes.
        await self.eio.admission.enter()
        await super()._handle_connect(eio_sid, namespace, data)

    async def _send_packet(self, eio_sid: str, pkt: Any) -> None:
        # python-socketio refuses a CONNECT to another namespace, or a second one, with a bare
        # string: given the object Socket.IO v5 clients read (server.transport.messages).
        pkt.data = shaped_connect_error(pkt.packet_type, pkt.data)
        await super()._send_packet(eio_sid, pkt)

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> None:
        await super()._handle_eio_connect(eio_sid, environ)
        asyncio.get_running_loop().call_later(self.connect_timeout_s, self._connect_deadline, eio_sid)

    def _leaves(self, eio_sid: str, data: str | bytes) -> bool:
        """Whether ``data`` is a DISCONNECT of namespace "/" by a connection that is in it."""
        return _disconnect_of_root(data) and self.manager.sid_from_eio_sid(eio_sid, "/") is not None

    def _connect_deadline(self, eio_sid: str) -> None:
        # An Engine.IO session that has not joined namespace "/" (never sent CONNECT, or was
        # refused) by now costs memory and a connection for nothing: close it.
        if eio_sid not in self.eio.sockets or self.manager.sid_from_eio_sid(eio_sid, "/") is not None:
            return
        task = asyncio.ensure_future(self.eio.end(eio_sid))
        self._deadlines.add(task)
        task.add_done_callback(self._deadlines.discard)

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: int | None, data: Any) -> None:
        refused = reserved(event_name(data))  # a malformed event raises: answered by _handle_eio_message
        if refused is not None:
            await self._refuse(eio_sid, namespace, id, refused, payload_of(data))
            return
        await super()._handle_event(eio_sid, namespace, id, data)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        # Caps count the whole message: the header plus every binary attachment, which arrive
        # as separate Engine.IO messages after it. A refused message's remaining attachments
        # are dropped as they arrive, unparsed and unkept.
        if isinstance(data, bytes) and self._skipping.get(eio_sid):
            self._skipping[eio_sid] -= 1
            return
        self._skipping.pop(eio_sid, None)
        size = _size_of(data)
        pending = self._binary_packet.get(eio_sid)
        # Every message spends a token of its connection's rate: an event of namespace "/" in its
        # handler's guard, or in its refusal below; anything else (a CONNECT, an ACK, another
        # namespace's event), which no guard sees, here. One over the rate is dropped unread,
        # except the DISCONNECT of a connection that is in namespace "/": dropped, the client
        # believed it had left while it stayed subscribed and present to everyone else, and the
        # CONNECT it sent next was refused as a second one (the fourth field audit). It costs
        # nothing to repeat: once out of "/", another one is charged as anything else.
        unguarded = pending is None and not _root_event(data)
        if unguarded and not self._charge_eio(eio_sid) and not self._leaves(eio_sid, data):
            return
        if pending is not None:
            total = self._binary_bytes.get(eio_sid, 0) + size
            if total > self.max_payload_bytes:
                del self._binary_packet[eio_sid]
                self._binary_bytes.pop(eio_sid, None)
                self._skipping[eio_sid] = pending.attachment_count - len(pending.attachments) - 1
                await self._refuse(eio_sid, pending.namespace, pending.id, too_large(self.max_payload_bytes))
                return
            self._binary_bytes[eio_sid] = total
        elif size > self.max_payload_bytes:
            header = _Header.of(data)
            self._skipping[eio_sid] = header.attachments
            error = too_large(self.max_payload_bytes)
            await self._refuse(
                eio_sid, header.namespace, header.ack_id, error, connect=header.connect, charge=not unguarded
            )
            return
        try:
            await super()._handle_eio_message(eio_sid, data)
        except Exception as exc:  # a frame python-socketio cannot take: answered, never dropped
            self._binary_packet.pop(eio_sid, None)
            await self._malformed(eio_sid, data, pending, exc, charge=not unguarded)
            return
        if pending is None and eio_sid in self._binary_packet:
            await self._admit_binary_header(eio_sid, size)
        elif eio_sid not in self._binary_packet:
            self._binary_bytes.pop(eio_sid, None)

    async def _admit_binary_header(self, eio_sid: str, size: int) -> None:
        header = self._binary_packet[eio_sid]
        if 0 < header.attachment_count <= MAX_ATTACHMENTS:
            self._binary_bytes[eio_sid] = size
            return
        del self._binary_packet[eio_sid]
        if header.attachment_count == 0:
            await self._refuse(eio_sid, header.namespace, header.id, malformed(NO_ATTACHMENT))
            return
        self._skipping[eio_sid] = header.attachment_count
        error = (ErrorCode.PAYLOAD_TOO_LARGE, f"messages are limited to {MAX_ATTACHMENTS} binary attachments")
        await self._refuse(eio_sid, header.namespace, header.id, error)

    async def _malformed(
        self, eio_sid: str, data: str | bytes, pending: Any, exc: Exception, *, charge: bool = True
    ) -> None:
        _MALFORMED_LOG.exception("malformed Socket.IO message", exc)
        if pending is not None:  # the failing part was an attachment: the header asked
            namespace, ack_id, connect = pending.namespace, pending.id, False
        else:
            header = _Header.of(data)
            namespace, ack_id, connect = header.namespace, header.ack_id, header.connect
        await self._refuse(eio_sid, namespace, ack_id, malformed(exc), connect=connect, charge=charge)

    async def _refuse(
        self,
        eio_sid: str,
        namespace: str | None,
        ack_id: int | None,
        error: Error,
        payload: Any = None,
        *,
        connect: bool = False,
        charge: bool = True,
    ) -> None:
        """Answer a message that will not be handled (``server.transport.messages.refusal_packet``);
        ``charge``: spend its token of the connection's rate (False: it has spent it already).
        Answered over the rate too (only long-polling gets here then: a WebSocket's message over
        the rate is refused before it is parsed), the refusal counted towards the flood cut."""
        if charge:
            self._charge_eio(eio_sid)
        reply = refusal_packet(self.packet_class, namespace or "/", ack_id, error, payload, connect=connect)
        if reply is not None:
            await self._send_packet(eio_sid, reply)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        await super()._handle_eio_disconnect(eio_sid, reason)
        self._binary_bytes.pop(eio_sid, None)
        self._skipping.pop(eio_sid, None)
        eio_socket = self.eio.sockets.get(eio_sid)
        ws = getattr(eio_socket, "sh_ws", None)
        if ws is not None:
            # The connection ends with its session: after the CLOSE packet Engine.IO writes
            # next, in this same step, so a client that ignores CLOSE is not left half-open.
            asyncio.get_running_loop().call_soon(ws.close)
        # A client that leaves while its long-poll GET is pending would otherwise keep that
        # request open until the ping timeout; an empty batch ends it now.
        if eio_socket is not None and not eio_socket.upgraded:
            eio_socket.queue.put_nowait(None)


class FrontSite(web.TCPSite):
    """aiohttp's TCP site with a ``server.transport.front.FrontProtocol`` reading each connection first
    (TCPSite's private settings are part of the contract above)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        upgrader: Upgrader,
        path: str,
        idle_timeout_s: float,
        observers: list[Callable[[FrontAnswer], None]],
        places: ConnectionPlaces | None = None,
        on_refused: Callable[[str], None] | None = None,
        descriptor_reserve: int | None = None,
    ) -> None:
        super().__init__(runner, host, port)
        self._descriptor_reserve = descriptor_reserve
        self._upgrader = upgrader
        self._path = path
        self._idle_timeout_s = idle_timeout_s
        self._observers = observers
        self._places = places
        self._on_refused = on_refused
        self._waiting: set[FrontProtocol] = set()
        self._acceptors: list[Acceptor] = []

    async def start(self) -> None:
        # TCPSite.start, with the front in front of aiohttp's handler factory.
        await web.BaseSite.start(self)
        http = self._runner.server
        assert http is not None
        front = Front(
            http, self._upgrader, self._path, self._idle_timeout_s, self._waiting, self._observers, self._places
        )
        if self._places is not None:
            _give_back_when_lost(http, front)

        def protocol(place: str) -> FrontProtocol:
            return FrontProtocol(front, place)

        # Bound by asyncio (never serving: its factory is never called), accepted by
        # server.transport.accept (which answers /healthz itself).
        self._server = await asyncio.get_running_loop().create_server(
            lambda: FrontProtocol(front), self._host, self._port,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port, start_serving=False,
        )  # fmt: skip
        sockets = self._server.sockets
        fixed = self._runner.app.get(FIXED_ANSWERS, {}) if isinstance(self._runner, web.AppRunner) else {}
        self._acceptors = accept_on(
            self._server, protocol, fixed=fixed, observers=self._observers, places=self._places,
            on_refused=self._on_refused, backlog=max(self._backlog, LISTEN_BACKLOG),
            descriptor_reserve=self._descriptor_reserve,
        )  # fmt: skip
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port

    async def stop(self) -> None:
        for acceptor in self._acceptors:
            acceptor.stop()
        self._acceptors.clear()
        await super().stop()
        for waiting in list(self._waiting):
            waiting.close()


def _give_back_when_lost(http: web.Server, front: Front) -> None:
    """A connection handed to aiohttp gives its address's place back when aiohttp's handler
    loses it: ``web.Server.connection_lost`` is what every ``RequestHandler`` calls then (its
    manager's), wrapped here -- one dict pop per connection, nothing per request."""
    lost = http.connection_lost
    handed = front.handed
    places = front.places
    assert places is not None

    def connection_lost(handler: RequestHandler, exc: BaseException | None = None) -> None:
        place = handed.pop(handler, None)
        if place is not None:
            places.give_back(place)
        lost(handler, exc)

    setattr(http, "connection_lost", connection_lost)  # noqa: B010 (a method: mypy refuses the assignment)
