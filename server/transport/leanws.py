"""The server side of an Engine.IO WebSocket on the bare transport: handshake, frames, messages.

Once a connection is upgraded, everything it needs is here, in one object per connection:
the frame parser (client frames are masked, may be fragmented, and carry pings and closes),
the Engine.IO upgrade probe, and the hand-off of each message to the Engine.IO socket. A
connection that sends nothing costs this object and its transport: no task, no timer, no
request object. aiohttp's ``WebSocketResponse`` kept the whole HTTP request (headers, parser,
handler coroutines) alive for the life of the connection, about 10 KiB each
(``bench/connections.py --trace``).

Messages of one connection are handled one after another, in the order they arrived: the
first starts a task that takes the connection's inbox until it is empty, then ends. While
that task is behind by :data:`INBOX_PAUSE` messages the transport stops reading, so a client
that sends faster than it is served is held back by TCP, not by a growing queue. The exception
is a run of messages the subclass lets be pipelined (:meth:`LeanWebSocket.may_pipeline`): up
to ``protocol.order.DEPTH`` of them are handled at once, each in a task of its own keeping
``protocol.order``'s rules, and the acks of those done leave in one write.

This module uses only documented parts of asyncio and python-engineio's packet encoding; the
taking over of aiohttp's connection lives in ``server.transport.fastpath`` with the rest of the contract.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import hashlib
import logging
import struct
import weakref
from collections import deque
from collections.abc import Mapping
from typing import Any, cast

from multidict import CIMultiDictProxy

from handlers.held_bytes import HeldBytes
from protocol import order, read_end
from server.transport.outlet import ws_frame

log = logging.getLogger(__name__)

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CLOSE_NORMAL, CLOSE_PROTOCOL, CLOSE_INVALID_DATA, CLOSE_POLICY, CLOSE_TOO_BIG = 1000, 1002, 1007, 1008, 1009
# Frames in a row that complete no data message (pings, pongs, fragments of an unfinished one):
# past this the connection is closed (1008). Messages are held to a rate (handlers.socket_router),
# these are not: a client sending pongs or 1-byte fragments by the hundred thousand cost the node
# a frame's parsing each for nothing. A client pings now and then, fragments a message in a few.
MAX_LOOSE_FRAMES = 1024
# Of those, pings and pongs: a client's own keep-alive pings come seconds apart, and Engine.IO's
# heartbeat brings a whole message (the client's "3") every ping interval. 1,024 pings per
# connection, each answered, and a fresh connection as soon as one was cut, let one address make
# the node answer ~34,000 pongs a second and every other client wait ~1 s (the fourth field audit).
MAX_CONTROL_FRAMES = 32
# The inbox length at which a connection stops reading until its messages are handled.
INBOX_PAUSE = 32
# Messages of one connection handled in a row before its consumer yields to the loop. A refused
# message completes without awaiting anything, so without this one connection's pipelined burst
# (thousands in one TCP read) ran in a single loop turn and held every other connection and
# HTTP request for its whole length (issue 20, finding 4).
MESSAGES_PER_TURN = 8
# How long a connection's next message waits after one of its messages was refused over the
# rate: a flooder is answered at most ~40 times a second (then held back by TCP, as any client
# that sends faster than it is served), so 20 of them cost the node a few percent of a core
# instead of all of it. A client within its rate is never refused, so never paused. (At the
# default flood limit, 200 refusals within 10 s, a flooder is still cut within about 5 s.)
REFUSAL_PAUSE_S = 0.025
# Frames parsed per loop turn: one read brings up to 256 KiB, thousands of small frames whose
# parsing alone held the loop for tens of milliseconds; the rest is parsed in later turns while
# the connection does not read.
FRAMES_PER_TURN = 64
# What a message's handling may hold back before writing it anyway (see _Gathered).
GATHER_LIMIT_BYTES = 64 * 1024
# Engine.IO's PONG: answered without a task (it only re-arms the ping timer).
_PONG = "3"


class HandshakeError(ValueError):
    """An upgrade request that is not a valid WebSocket opening handshake."""


def accept_key(headers: Mapping[str, str]) -> str:
    """The ``Sec-WebSocket-Accept`` answering ``headers``, or :class:`HandshakeError`."""
    if "websocket" not in headers.get("Upgrade", "").lower():
        raise HandshakeError("no 'Upgrade: websocket' header")
    if "upgrade" not in [token.strip() for token in headers.get("Connection", "").lower().split(",")]:
        raise HandshakeError("no 'Connection: upgrade' header")
    if headers.get("Sec-WebSocket-Version", "") != "13":
        raise HandshakeError("unsupported WebSocket version (13 is)")
    key = headers.get("Sec-WebSocket-Key", "").strip()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise HandshakeError("Sec-WebSocket-Key is not 16 bytes")
    except binascii.Error:
        raise HandshakeError("Sec-WebSocket-Key is not base64") from None
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def opening_refusal(headers: CIMultiDictProxy[str], *, http_11: bool) -> str | None:
    """Why a request routed as a WebSocket opening is not one (None when it is).

    Checked before Engine.IO sees it: without ``Connection: upgrade`` Engine.IO would serve the
    request as a long poll and answer with a list the HTTP driver cannot send (a 500). An
    HTTP/1.0 request cannot switch protocols (RFC 6455 section 4.1), and two keys are no key.
    """
    if not http_11:
        return "a WebSocket opening needs HTTP/1.1"
    if len(headers.getall("Sec-WebSocket-Key", [])) != 1:
        return "exactly one Sec-WebSocket-Key header is required"
    try:
        accept_key(headers)
    except HandshakeError as exc:
        return str(exc)
    return None


# Close codes a peer may send (RFC 6455 section 7.4): 1004-1006 and 1015 are reserved for
# reports that never travel in a frame, 1016-2999 are unassigned or for extensions.
_SENDABLE_CLOSE = frozenset(range(1000, 1004)) | frozenset(range(1007, 1015)) | frozenset(range(3000, 5000))


# Sockets closed per loop turn by close_soon: a turn of them takes a few milliseconds.
CLOSE_BATCH = 64


class _Closer:
    """Closes transports at most CLOSE_BATCH per loop turn, in the order they were given."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: deque[asyncio.BaseTransport] = deque()
        self.scheduled = False

    def add(self, transport: asyncio.BaseTransport) -> None:
        self.pending.append(transport)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.run)

    def run(self) -> None:
        pending = self.pending
        for _ in range(min(CLOSE_BATCH, len(pending))):
            transport = pending.popleft()
            if not transport.is_closing():
                transport.close()  # its connection_lost comes in a later turn
        if pending:
            self.loop.call_soon(self.run)  # behind what became ready meanwhile
        else:
            self.scheduled = False


_closers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Closer] = weakref.WeakKeyDictionary()


def close_soon(transport: asyncio.BaseTransport) -> None:
    """Close ``transport`` in a coming loop turn, at most CLOSE_BATCH of them per turn."""
    loop = asyncio.get_running_loop()
    closer = _closers.get(loop)
    if closer is None:
        closer = _closers[loop] = _Closer(loop)
    closer.add(transport)


def answered_close_code(payload: bytes) -> int:
    """The code to close with in answer to a close frame carrying ``payload``: the peer's own
    when it may be sent, 1000 for none, 1002 for a reserved, unassigned or truncated code, 1007
    for a reason that is not UTF-8 (RFC 6455 section 5.5.1: it must be)."""
    if not payload:
        return CLOSE_NORMAL
    if len(payload) < 2:
        return CLOSE_PROTOCOL
    code = int(struct.unpack("!H", payload[:2])[0])
    if code not in _SENDABLE_CLOSE:
        return CLOSE_PROTOCOL
    try:
        payload[2:].decode()
    except UnicodeDecodeError:
        return CLOSE_INVALID_DATA
    return code


def switching_protocols(accept: str) -> bytes:
    """The 101 response completing the handshake (no subprotocol, no compression)."""
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
    ).encode()


def _unmask(mask: bytes, payload: bytes) -> bytes:
    size = len(payload)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


class FrameError(ValueError):
    """A frame that breaks RFC 6455 or a limit; ``code`` is the close code to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class FrameParser:
    """Client frames in, whole messages and control frames out (RFC 6455 section 5)."""

    __slots__ = (
        "_budget",
        "_buffer",
        "_control",
        "_fragments",
        "_fragments_op",
        "_held",
        "_loose",
        "max_message_bytes",
        "more",
    )

    def __init__(self, max_message_bytes: int, budget: HeldBytes | None = None) -> None:
        self._buffer = bytearray()
        # An unfinished fragmented message, as one buffer: a list of fragments cost a bytes
        # object and a slot per fragment, ~20x the payload of 2-byte fragments (the budget
        # counts payload bytes).
        self._fragments = bytearray()
        self._fragments_op = 0
        self.max_message_bytes = max_message_bytes
        self._budget = budget
        self._held = 0  # what this parser counts in its budget's ``held``
        # The last feed stopped at its frame limit: what is buffered may hold more frames.
        self.more = False
        self._loose = 0  # frames since the last whole data message (MAX_LOOSE_FRAMES)
        self._control = 0  # pings and pongs since then (MAX_CONTROL_FRAMES)

    def release(self) -> None:
        """Drop what is buffered (the connection is over) and give its bytes back to the budget."""
        self._buffer = bytearray()
        self._fragments, self._fragments_op = bytearray(), 0
        if self._budget is not None:
            self._budget.held -= self._held
        self._held = 0

    def _account(self) -> None:
        budget = self._budget
        if budget is None:
            return
        held = len(self._buffer) + len(self._fragments)
        grew = held > self._held
        budget.held += held - self._held
        self._held = held
        if grew and budget.held > budget.limit:
            self.release()
            raise FrameError(CLOSE_TOO_BIG, "the server holds too many unfinished messages; send it whole, later")

    def feed(self, data: bytes, limit: int = 1 << 30) -> list[tuple[int, bytes]]:
        """``(opcode, payload)`` of the messages and control frames completed by ``data``, at
        most ``limit`` frames of them: the rest stays buffered for the next call (``feed(b"")``)."""
        buffer = self._buffer
        buffer += data
        found: list[tuple[int, bytes]] = []
        at = 0
        end = len(buffer)
        frames = 0
        while end - at >= 2 and frames < limit:
            frames += 1
            first, second = buffer[at], buffer[at + 1]
            if first & 0x70:
                raise FrameError(CLOSE_PROTOCOL, "reserved bits set (no extension was agreed)")
            if not second & 0x80:
                raise FrameError(CLOSE_PROTOCOL, "a client frame must be masked")
            opcode, final, size = first & 0x0F, first & 0x80, second & 0x7F
            head = 2
            if size == 126:
                if end - at < 4:
                    break
                size = int.from_bytes(buffer[at + 2 : at + 4], "big")
                head = 4
            elif size == 127:
                if end - at < 10:
                    break
                size = int.from_bytes(buffer[at + 2 : at + 10], "big")
                if size >> 63:
                    raise FrameError(CLOSE_PROTOCOL, "a 64-bit length must have its most significant bit clear")
                head = 10
            if opcode >= OP_CLOSE and (size > 125 or not final):
                raise FrameError(CLOSE_PROTOCOL, "a control frame must be final and at most 125 bytes")
            if size > self.max_message_bytes or len(self._fragments) + size > self.max_message_bytes:
                raise FrameError(CLOSE_TOO_BIG, f"messages are limited to {self.max_message_bytes} bytes")
            if end - at < head + 4 + size:
                break
            mask = bytes(buffer[at + head : at + head + 4])
            payload = _unmask(mask, bytes(buffer[at + head + 4 : at + head + 4 + size]))
            at += head + 4 + size
            message = self._assemble(opcode, bool(final), payload)
            if message is not None:
                found.append(message)
        if at:
            del buffer[:at]
        self.more = frames >= limit
        self._account()
        return found

    def _loose_frame(self) -> None:
        self._loose += 1
        if self._loose > MAX_LOOSE_FRAMES:
            raise FrameError(CLOSE_POLICY, f"more than {MAX_LOOSE_FRAMES} frames in a row without a whole message")

    def _assemble(self, opcode: int, final: bool, payload: bytes) -> tuple[int, bytes] | None:
        if opcode >= OP_CLOSE:
            if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                raise FrameError(CLOSE_PROTOCOL, f"unknown control opcode {opcode}")
            self._loose_frame()
            self._control += 1
            if self._control > MAX_CONTROL_FRAMES:
                raise FrameError(
                    CLOSE_POLICY, f"more than {MAX_CONTROL_FRAMES} pings or pongs in a row without a whole message"
                )
            return opcode, payload  # control frames may come between fragments
        if opcode == OP_CONTINUATION:
            if not self._fragments_op:
                raise FrameError(CLOSE_PROTOCOL, "a continuation frame without a message to continue")
            self._fragments += payload
            if not final:
                self._loose_frame()
                return None
            whole = (self._fragments_op, bytes(self._fragments))
            self._fragments, self._fragments_op, self._loose, self._control = bytearray(), 0, 0, 0
            return whole
        if opcode not in (OP_TEXT, OP_BINARY):
            raise FrameError(CLOSE_PROTOCOL, f"unknown data opcode {opcode}")
        if self._fragments_op:
            raise FrameError(CLOSE_PROTOCOL, "a new message before the last one ended")
        if final:
            if self._loose:
                self._loose = self._control = 0
            return opcode, payload
        self._loose_frame()
        self._fragments, self._fragments_op = bytearray(payload), opcode
        return None


class _Gathered:
    """Stands in for a transport while a message is handled: its writes leave as one.

    Whatever writes to the connection meanwhile (the handler's frames, its ack, a fan-out
    round) writes here, in the order it happens, so order is kept. Past ``limit_bytes`` what is
    gathered goes out at once, so a long handler holds no more than that back. Anything else
    asked of it is the transport's.
    """

    __slots__ = ("limit_bytes", "parts", "size", "transport")

    def __init__(self, transport: asyncio.Transport, limit_bytes: int) -> None:
        self.transport = transport
        self.limit_bytes = limit_bytes
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)
        if self.size >= self.limit_bytes:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
            self.parts = []
            self.size = 0
            self.transport.write(data)

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self.parts = []
        self.transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class LeanWebSocket(asyncio.Protocol):
    """One upgraded connection: frames in, whole messages to :meth:`handle_message`, frames out.

    A subclass says what a message means. :meth:`handle_message` gets each text message as
    ``str`` and each binary one as ``bytes``, one at a time and in order, except the runs of
    messages :meth:`may_pipeline` accepts, which go to :meth:`handle_pipelined` up to
    ``protocol.order.DEPTH`` at once. :meth:`handle_pong`
    gets Engine.IO PONGs that arrive while nothing else is pending (they need no task).
    :meth:`handle_closed` runs once, when the connection is over *and* the messages being
    handled (if any) have finished, so a handler never sees its connection's cleanup before it
    returns. While ``in_prelude`` is set, messages go to :meth:`handle_prelude` synchronously
    instead (the Engine.IO upgrade probe); it may raise :class:`FrameError` to end the
    connection.
    """

    __slots__ = ("_backlog", "_closed_called", "_consumer", "_inbox", "_last_turn", "_loop", "_parser", "_paused",
                 "_room", "_running", "_writing", "in_prelude", "lost", "slow_limit_bytes", "transport")  # fmt: skip

    def __init__(
        self,
        transport: asyncio.Transport,
        *,
        max_message_bytes: int,
        slow_limit_bytes: int,
        budget: HeldBytes | None = None,
    ) -> None:
        self.transport: asyncio.Transport | None = transport
        # Kept: asking asyncio for the running loop costs a getpid() system call on Python 3.11,
        # and every pipelined event would ask twice.
        self._loop = asyncio.get_running_loop()
        self._parser = FrameParser(max_message_bytes, budget)
        self._inbox: deque[str | bytes] = deque()
        self._consumer: asyncio.Task[None] | None = None
        # While a pipeline runs -- the consumer's (_pipeline), or one without a task that a
        # message finding the connection idle starts (_message, carried on by _carry_on): the
        # turns running, oldest first, the turn of the last one started, what the consumer waits
        # on for room (its pipeline only), and whether the finished turns' acks are to be
        # written (_write_done) already.
        self._running: deque[order.Turn] | None = None
        self._last_turn: order.Turn | None = None
        self._room: asyncio.Future[None] | None = None
        self._writing = False
        self._paused = False  # not reading: the inbox is full
        self._backlog = False  # not reading: what was read is not all parsed yet
        self._closed_called = False
        self.lost = False
        self.in_prelude = False
        self.slow_limit_bytes = slow_limit_bytes
        # The slow-client cut rides on asyncio's flow control: pause_writing() is called once
        # the bytes waiting for the client exceed this, so no write has to check for it.
        transport.set_write_buffer_limits(high=slow_limit_bytes)

    # --- what a subclass gives meaning to ---------------------------------------------------
    async def handle_message(self, message: str | bytes) -> bool | None:
        """One whole message, after every earlier one was handled. It may leave what it wrote
        gathered (:meth:`gather`): the consumer releases it before it next yields to the loop.
        True: the message was refused as over its connection's rate; the connection's next
        message waits :data:`REFUSAL_PAUSE_S`."""
        return None

    def may_pipeline(self, message: str | bytes) -> bool:
        """Whether ``message`` may start while earlier ones are still handled
        (:meth:`handle_pipelined`); False, the default: it starts once they have finished."""
        return False

    async def handle_pipelined(self, message: str | bytes) -> None:
        """A message :meth:`may_pipeline` took, in a task of its own holding its
        ``protocol.order.Turn``: it keeps the turn's rules (its writes are gathered until the
        consumer writes the finished turns' together)."""

    def handle_pong(self) -> None:
        """An Engine.IO PONG that arrived while no message was pending."""

    def handle_prelude(self, message: str | bytes) -> bool:
        """A message while ``in_prelude``; False ends the prelude."""
        return False

    def handle_closed(self) -> None:
        """The connection is over and no handler of it is running."""

    def handle_lost_transport(self, transport: asyncio.BaseTransport, exc: Exception | None) -> None:
        """The connection's transport, just after its ``connection_lost`` (with ``exc``): nothing
        uses it any more."""

    # --- writing ---------------------------------------------------------------------------
    def write_frame(self, data: bytes) -> bool:
        """Write whole frames now; False when the connection is gone or has been cut as slow."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        transport.write(data)
        return True

    def gather(self) -> None:
        """Hold what is written from now until :meth:`release`, then write it all at once."""
        transport = self.transport
        if transport is not None and not isinstance(transport, _Gathered):
            self.transport = cast(asyncio.Transport, _Gathered(transport, GATHER_LIMIT_BYTES))

    def release(self) -> None:
        """Write what :meth:`gather` held (nothing when the connection was lost meanwhile)."""
        gathered = self.transport
        if isinstance(gathered, _Gathered):
            self.transport = gathered.transport
            gathered.flush()

    def _flush(self) -> None:
        """Write what is gathered so far, and go on gathering."""
        gathered = self.transport
        if isinstance(gathered, _Gathered):
            gathered.flush()

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Send a close frame (after what is already written) and close the connection."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(ws_frame(struct.pack("!H", code) + reason.encode()[:120], OP_CLOSE))
            transport.close()

    # --- asyncio.Protocol -------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        try:
            messages = self._parser.feed(data, FRAMES_PER_TURN)
        except FrameError as exc:
            self.close(exc.code, str(exc))
            return
        self._dispatch(messages)
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._parser.more:
            # More may be buffered (the frames parsed may have completed no message: fragments):
            # parsed in a later turn, behind what else is ready, or once the inbox is empty when
            # it is full (the consumer then asks, see _consume).
            if not self._backlog:
                self._backlog = True
                self._set_reading()
            if not self._paused:
                asyncio.get_running_loop().call_soon(self.data_received, b"")
        elif self._backlog:
            self._backlog = False
            self._set_reading()

    def _set_reading(self) -> None:
        """Read while neither the inbox nor the parser has a backlog."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._paused or self._backlog:
            if transport.is_reading():
                transport.pause_reading()
        elif not transport.is_reading():
            transport.resume_reading()

    def _dispatch(self, messages: list[tuple[int, bytes]]) -> None:
        # Pings of one read are answered with one pong, for the last of them (RFC 6455 section
        # 5.5.3 allows it): a write per ping cost the node a system call each.
        ping: bytes | None = None
        for opcode, payload in messages:
            if opcode == OP_PING:
                ping = payload
                continue
            if ping is not None:
                self.write_frame(ws_frame(ping, OP_PONG))
                ping = None
            if opcode == OP_TEXT:
                try:
                    text = payload.decode()
                except UnicodeDecodeError:
                    self.close(CLOSE_INVALID_DATA, "a text message must be UTF-8")
                    return
                self._message(text)
            elif opcode == OP_BINARY:
                self._message(payload)
            elif opcode == OP_CLOSE:
                self.close(answered_close_code(payload))
                return
            # OP_PONG: an answer to nothing we sent; ignored
            if self.transport is None or self.transport.is_closing():
                return
        if ping is not None:
            self.write_frame(ws_frame(ping, OP_PONG))

    def eof_received(self) -> bool:
        # The client closed its side. Closing ours is left to a batched closer: when
        # thousands of clients leave at once, asyncio would close every socket (a costly
        # syscall each) and call every connection_lost in a single loop turn, holding
        # everything else (a /healthz) for that long.
        transport = self.transport
        if transport is not None and not transport.is_closing():
            close_soon(transport)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        transport = self.transport
        self.transport = None
        if isinstance(transport, _Gathered):
            transport = transport.transport
        if transport is not None:
            self.handle_lost_transport(transport, exc)
        self._parser.release()  # an unfinished frame is not kept past its connection
        self._inbox.clear()  # what was not handled yet is dropped with the connection
        if self._consumer is None and not self._running:
            self._finish()  # else once the last turn is done (_write_done, _consume)

    def pause_writing(self) -> None:
        # Over slow_limit_bytes wait for a client that does not read: it is cut (nothing here
        # waits for a drain); it resumes from its offset when it reconnects.
        transport = self.transport
        if transport is not None:
            log.warning("closing a client that does not read (%d bytes waiting)", transport.get_write_buffer_size())
            transport.abort()

    def resume_writing(self) -> None:
        pass

    # --- messages -------------------------------------------------------------------------
    def _message(self, message: str | bytes) -> None:
        if self.in_prelude:
            try:
                self.in_prelude = self.handle_prelude(message)
            except FrameError as exc:
                self.close(exc.code, str(exc))
            return
        if self._consumer is None and self._running is None:
            if message == _PONG:
                self.handle_pong()
                return
            if self.may_pipeline(message):
                # A pipeline without a task: the turn starts here, in the read that brought it,
                # and _write_done carries on from the inbox. A steady client sends one event per
                # read, and a consumer task per event cost a task's creation, two of its steps and
                # a loop turn before the event was even looked at.
                self._running = deque()
                self.gather()
                self._start_turn(message)
                return
            self._inbox.append(message)
            self._consumer = self._loop.create_task(self._consume())
            return
        running = self._running
        if running is not None and not self._inbox and len(running) < order.DEPTH and self.may_pipeline(message):
            self._start_turn(message)  # behind the ones running, nothing else ahead of it
            return
        self._inbox.append(message)
        if len(self._inbox) >= INBOX_PAUSE and not self._paused:
            self._paused = True
            self._set_reading()

    async def _consume(self) -> None:
        inbox = self._inbox
        try:
            handled = 0
            while inbox:
                if self.may_pipeline(inbox[0]):
                    await self._pipeline()
                    continue
                refused = await self.handle_message(inbox.popleft())
                handled += 1
                if refused and inbox:
                    handled = 0
                    self.release()
                    await asyncio.sleep(REFUSAL_PAUSE_S)
                elif handled >= MESSAGES_PER_TURN and inbox:
                    # Behind whatever became ready meanwhile (other connections, HTTP), then on.
                    handled = 0
                    self.release()
                    await asyncio.sleep(0)
        finally:
            self.release()  # what a handler left gathered (refusals: see handle_message)
            self._consumer = None
            if self.lost:
                self._finish()
            elif self._paused:
                self._resume()

    async def _pipeline(self) -> None:
        """Handle the pipelinable messages at the head of the inbox, up to ``order.DEPTH`` at
        once, each in a task holding its turn (``protocol.order``), until none is left running.
        One that arrives meanwhile, with nothing ahead of it in the inbox, starts at once
        (:meth:`_message`), not when the oldest running one is done.

        The acks of the turns that finished are written by :meth:`_write_done`, together, in
        the loop step after the first of them finished; this task only waits for room.
        """
        inbox = self._inbox
        running = self._running = deque()
        loop = self._loop
        self.gather()
        try:
            while True:
                while inbox and len(running) < order.DEPTH and self.may_pipeline(inbox[0]):
                    self._start_turn(inbox.popleft())
                if not running:
                    return
                self._room = loop.create_future()
                await self._room
        finally:
            # Cancelled (the server stopping): what runs is let finish, and nothing handed to
            # after_ack (the bus's hold releases) is left behind.
            self._running, self._last_turn, self._room = None, None, None
            for turn in running:
                turn.finish()
            self.release()
            for turn in running:
                turn.run_after()

    def _start_turn(self, message: str | bytes) -> None:
        """Start handling ``message`` in a task of its own, behind the last one started."""
        running = self._running
        assert running is not None
        turn = self._last_turn = order.Turn(self._last_turn)
        running.append(turn)
        if self.start_now(message, turn):
            return  # its commit is sent; the reply's callback finishes the turn
        context = contextvars.copy_context()
        context.run(order.TURN.set, turn)
        turn.task = self._loop.create_task(self._take_turn(message, turn), context=context)

    def start_now(self, message: str | bytes, turn: order.Turn) -> bool:
        """Handle a pipelinable ``message`` without a task, when it can: True when it did, and
        will call :meth:`turn_finished` once it finished ``turn`` (its ack written, in order);
        False to start its task. Here, never."""
        return False

    def turn_finished(self) -> None:
        """A turn of the pipeline finished: its ack and those finished with it are written
        together, once the read that finished it is handled (``protocol.read_end``: the turns
        whose replies came in the same read finish first), or in the next step."""
        if not self._writing:
            self._writing = True
            read_end.soon(self._write_done, self._loop)

    async def _take_turn(self, message: str | bytes, turn: order.Turn) -> None:
        try:
            await self.handle_pipelined(message)
        except Exception:  # a handler's failure is its ack; this is a bug, said once, never silent
            log.exception("a pipelined message failed")
        finally:
            turn.finish()
            self.turn_finished()

    def _write_done(self) -> None:
        """Write the acks of the finished turns at the head, together, then run what they handed
        to ``after_ack`` in order; wake the consumer when it has room to start more."""
        self._writing = False
        running = self._running
        if running is None:
            return  # the pipeline is over: its end wrote everything and ran what was handed over
        done: list[order.Turn] = []
        while running and running[0].finished:
            done.append(running.popleft())
        if not done:
            return
        self._flush()
        for turn in done:
            turn.run_after()
        if self._consumer is None:
            self._carry_on()
            return
        room = self._room
        if room is not None and not room.done() and (not running or (self._inbox and len(running) < order.DEPTH)):
            room.set_result(None)

    def _carry_on(self) -> None:
        """The task-less pipeline (started by :meth:`_message`), after turns finished: start what
        waits in the inbox while there is room; when nothing runs any more, end it, and hand a
        message that may not pipeline to the consumer task."""
        inbox, running = self._inbox, self._running
        assert running is not None
        while inbox and len(running) < order.DEPTH and self.may_pipeline(inbox[0]):
            self._start_turn(inbox.popleft())
        if running:
            if self._paused and not inbox:
                self._resume()
            return
        self._running = self._last_turn = None
        self.release()
        if inbox:
            self._consumer = self._loop.create_task(self._consume())
        elif self.lost:
            self._finish()
        elif self._paused:
            self._resume()

    def _resume(self) -> None:
        """Read again once the inbox that paused reading has emptied (parse the backlog first)."""
        self._paused = False
        if self._backlog:
            self.data_received(b"")  # parsing was waiting for the inbox to empty
        else:
            self._set_reading()

    def _finish(self) -> None:
        if not self._closed_called:
            self._closed_called = True
            self.handle_closed()
