"""The transport's contract: what the bus and the handlers may rely on, whichever lane serves.

Two lanes implement it: the fast lane (``server.transport.fastpath``, private parts of the
libraries, tested versions only) and the stock lane (``server.transport.stock``, documented
API only). Nothing outside ``server/transport/`` touches a socket, a queue or a WebSocket.

**Outlets.** :meth:`SocketServer.outlet` gives a connection's :class:`Outlet`: the one way out
to that connection. An outlet takes Socket.IO packets encoded once (:class:`Packet`, the same
bytes for every recipient) and never awaits.

**Order.** Everything a connection is sent leaves in the order it was handed over, whoever
hands it: the acks python-socketio sends for the connection's events, and the packets given
to its outlet. And an event handler's ack is handed over *before the handler's task next
yields to the loop*: a callback the handler schedules with ``loop.call_soon`` (the bus's
release of a held fan-out, ``handlers.socket_router``) runs after its ack is on its way, so a
change's ack never trails the change's fan-out. The fast lane writes the ack to the WebSocket
in that step; the stock lane puts it on the socket's queue in that step (python-engineio's
``send`` does not suspend on an unbounded queue), and the outlet puts behind it.
``tests/test_ordering.py`` checks it on both lanes (``make test-stock``).

**Pipelined events.** An event name given to :meth:`SocketServer.pipeline` may be handled while
the connection's earlier events still are: then the handler's task holds a
``protocol.order.Turn``, its ack waits for the acks before it, and what is to run once its ack is
on its way goes through ``protocol.order.after_ack`` (run by the lane after it wrote the ack)
instead of ``call_soon``. ``tests/test_pipelined_events.py`` checks it.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:  # for annotations only: this module is imported before the lane is chosen
    from aiohttp import web

    from handlers.http_common import FrontAnswer
    from protocol.order import Answered

_OP_TEXT = 0x1
log = logging.getLogger(__name__)


def ws_frame(payload: bytes, opcode: int = _OP_TEXT) -> bytes:
    """An unmasked, uncompressed, final server-to-client WebSocket frame."""
    first = 0x80 | opcode
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, size)
    elif size < 65536:
        header = struct.pack("!BBH", first, 126, size)
    else:
        header = struct.pack("!BBQ", first, 127, size)
    return header + payload


class ListeningSite(Protocol):
    """What a lane's :meth:`SocketServer.site` gives: an aiohttp site (``web.TCPSite`` or a
    ``web.BaseSite`` of the lane's own) that says the port it listens on once started."""

    @property
    def port(self) -> int:
        """The port listened on once started (the one asked for before: 0 for any)."""
        ...

    @property
    def name(self) -> str: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Packet:
    """A Socket.IO EVENT packet for namespace ``/``, encoded once for every connection.

    ``text`` is the Engine.IO MESSAGE's payload (what the stock lane queues), ``frame`` the
    whole WebSocket frame (what the fast lane writes).
    """

    __slots__ = ("frame", "text")

    def __init__(self, event: str, data_json: str) -> None:
        # event names are protocol identifiers (no quoting needed); data_json is valid JSON
        self.text = f'2["{event}",{data_json}]'
        self.frame = ws_frame(b"4" + self.text.encode())


class Outlet(Protocol):
    """One connection's way out (see the module docstring for the order it keeps)."""

    def send(self, packet: Packet) -> None:
        """Hand one packet over, behind everything handed over before; never waits."""
        ...

    def send_batch(self, packets: Sequence[Packet], frames: bytes) -> None:
        """Hand several packets over at once; ``frames`` is ``b"".join(p.frame for p in packets)``
        (built once per batch, so a lane that writes frames writes them in one call)."""
        ...

    def gone(self) -> bool:
        """True once the connection is closing or closed: nothing handed over will leave."""
        ...


# What a registered event handler is called with (sid, payload...) and answers (its ack).
EventHandler = Callable[..., Any]


class Committed(Protocol):
    """A pipelined event whose commit its guard sent without a task (``SocketServer.pipeline``'s
    ``commit``). The lane writes its ack, in its connection's order, once :attr:`future` is
    done and the event before it has finished, then runs :meth:`after_ack`."""

    @property
    def future(self) -> Answered:
        """Done when the commit's reply is in."""
        ...

    def answer(self) -> dict[str, Any]:
        """The event's ack (called once, after :attr:`future` is done)."""
        ...

    def after_ack(self) -> None:
        """What runs once the ack is written (the session's held fan-out)."""
        ...


# ``commit(sid, data, extra)``: an event's commit sent now, or None (having done nothing) to
# handle it the usual way; ``data`` is its first argument, ``extra`` whether it had more.
Commit = Callable[[str, Any, bool], Committed | None]


class SocketServer(Protocol):
    """The Socket.IO server of either lane, as the composition root (``server.app``) uses it."""

    lane: Literal["fast", "stock"]

    def on(self, event: str, handler: EventHandler) -> None:
        """Register ``handler`` for ``event`` (``"*"``: every event without a handler)."""
        ...

    def attach(self, app: Any, socketio_path: str = "socket.io") -> None:
        """Serve Socket.IO on the aiohttp application ``app`` under ``/socketio_path/``."""
        ...

    def outlet(self, sid: str) -> Outlet | None:
        """The connection's outlet, or None when ``sid`` is not connected (any more)."""
        ...

    async def disconnect(self, sid: str, namespace: str | None = None, ignore_queue: bool = False) -> None:
        """Disconnect a client, its Engine.IO session and TCP connection included."""
        ...

    async def emit(self, event: str, data: Any = None, to: str | None = None) -> None:
        """Send ``event`` to the connection ``to`` (python-socketio's public ``emit``)."""
        ...

    async def flushed(self, sid: str, bound_s: float) -> bool:
        """Return once what was sent to ``sid`` has left (a long-polling client's poll took it:
        ``server.transport.flushing``), or False after ``bound_s``."""
        ...

    async def shutdown(self) -> None:
        """Stop the server's background work (Engine.IO's ping-timeout task; python-socketio's
        own ``shutdown``), at the app's shutdown."""
        ...

    def screen_rate(self, over_rate: Callable[[str], bool], refuse: Callable[[str, str, Any], dict[str, Any]]) -> None:
        """Answer events over their connection's rate before they are decoded for a handler:
        ``over_rate(sid)`` says whether to, ``refuse(sid, event, data)`` gives the ack (and
        counts it). The fast lane does; the stock lane leaves it to the handler's guard."""
        ...

    def pipeline(self, event: str, commit: Commit | None = None) -> None:
        """Let ``event``'s messages of one connection start while the earlier ones are handled,
        under ``protocol.order``'s rules. The fast lane does, up to ``protocol.order.DEPTH`` at
        once, and asks ``commit`` first, when given, to send the event's commit without a task
        or a coroutine (the event's handler runs only when it declines); the stock lane handles
        every event of a connection one after another."""
        ...

    def count_with(self, sent: Callable[[int, int], None], refused: Callable[[str], None]) -> None:
        """Report the messages (and their bytes) this server sends one at a time -- acks, emits,
        not the bus's fan-out, which counts its own -- to ``sent``, and its refusals to ``refused``."""
        ...

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
        """The listening site for ``runner``'s application (``path``: where Socket.IO is served;
        ``observers`` see the requests answered before aiohttp saw them -- WebSocket opens and, on
        both lanes, fixed answers such as ``/healthz`` --, ``idle_timeout_s`` bounds a
        handshake). Once started, its ``port`` property is the port it listens on (as
        ``web.TCPSite.port``; ``runner.addresses`` may not list it)."""
        ...


def end_sessions_at_shutdown(app: web.Application, sockets: Mapping[str, Any]) -> None:
    """Close every Engine.IO session in ``sockets`` (a lane's ``eio.sockets``) when ``app`` shuts down.

    Both lanes do it, without waiting for a socket's queue to drain: a client gone, or a pending
    long-poll GET, would otherwise hold the server's shutdown for up to a ping interval plus
    timeout. The end marker ends a waiting GET with an empty batch, and a WebSocket's writer.

    Without Engine.IO's CLOSE packet (``abort``): python-engineio's client takes a CLOSE from the
    server for a disconnect meant for good and never reconnects, so every Python client (bots,
    adapters) stayed down after a restart or deploy. Its transport closing under it is a transport
    error, which every client reconnects after, as PROTOCOL.md's "Stopping" says they do.
    """

    async def end_sessions(_app: web.Application) -> None:
        for socket in list(sockets.values()):
            try:
                await socket.close(wait=False, abort=True)
                await socket.queue.put(None)  # Engine.IO's "stop writing"
            except Exception:  # one socket must not keep the others open
                log.exception("closing an Engine.IO session at shutdown")

    app.on_shutdown.append(end_sessions)
