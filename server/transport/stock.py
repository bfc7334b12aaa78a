"""The stock lane: python-socketio and python-engineio as released, through their documented API.

It serves when an installed library is outside the versions the fast lane was tested with
(``server.transport.versions``), or when ``SESSIONHUB_TRANSPORT=stock`` asks for it: slower
(a task and an ``asyncio.Queue`` per connection, one write per packet), never down. It keeps
the contract of ``server.transport.contract``: events of a connection run one after another,
in order (``async_handlers=False``); a handler's ack is put on the socket's queue before the
handler's task yields (python-engineio's ``AsyncSocket.send`` does not suspend on an unbounded
queue); :class:`StockOutlet` puts behind it on the same queue, so the order is the queue's.

Text messages are screened before python-socketio parses them (:meth:`StockSessionServer.screen`,
put in front of its handler through Engine.IO's public handler registry): one over
``max_payload_bytes``, a malformed event or a reserved event name is answered as on the fast
lane (``server.transport.messages``). What only the fast lane does, because it needs the
libraries' private parts: binary messages are not screened, and the per-address connection
limit, the connect deadline and the slow-client cut are python-engineio's own (none, none,
``ping_timeout``), and a mass disconnect costs what python-socketio's manager makes it cost
(O(clients) per client leaving; the fast lane's ``RoomIndex`` makes it O(1)).
Nothing here reads a private name: the attributes used (``eio``,
``handlers``, ``manager``, ``packet_class``, ``sockets``, a socket's ``queue``, ``closed``) and
methods (``on``, ``send``, ``eio_sid_from_sid``, ``disconnect``, ``close``) are documented or
public.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import socketio
from aiohttp import web
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from handlers.http_common import AnsweredUpgrade
from handlers.log_throttle import LogThrottle
from protocol import wire_json
from protocol.errors import ErrorCode
from server.transport.contract import Outlet, Packet, end_sessions_at_shutdown
from server.transport.messages import Header, malformed, refusal, refusal_packet

log = logging.getLogger(__name__)
# Hostile clients can send malformed messages by the thousand: one traceback per cause, then counts.
_MALFORMED_LOG = LogThrottle(log, level=logging.WARNING)


class WirePacket(sio_packet.Packet):
    """Socket.IO packets encoded with :mod:`protocol.wire_json` (python-socketio's documented
    ``serializer`` hook takes a packet class; its ``json`` attribute is what packets encode and
    decode with)."""

    json = wire_json


class EngineLog:
    """python-engineio's logger for both lanes: errors only, and the traceback of a failure a
    client can cause (an undecodable frame logs "Unknown receive error") once per cause."""

    def debug(self, *args: Any, **kwargs: Any) -> None:
        pass

    # Engine.IO's warnings are about what clients send (unsupported methods, unknown sids):
    # dropped, as its own logger at level ERROR would, so that a client cannot flood the log.
    info = warning = debug

    def error(self, message: str, *args: Any, **kwargs: Any) -> None:
        log.error("engineio: " + message, *args)

    def exception(self, message: str, *args: Any, **kwargs: Any) -> None:
        exc = sys.exc_info()[1]
        if exc is None:
            self.error(message, *args)
        else:
            _MALFORMED_LOG.exception("engineio: " + (message % args if args else message), exc)


def _ignore_sent(messages: int, size: int) -> None:
    """The default count of sent messages: nobody counts."""


class StockOutlet:
    """A connection of the stock lane: packets go on its Engine.IO socket's queue."""

    __slots__ = ("socket",)

    def __init__(self, eio_socket: Any) -> None:
        self.socket = eio_socket

    def send(self, packet: Packet) -> None:
        if not self.gone():
            self.socket.queue.put_nowait(eio_packet.Packet(eio_packet.MESSAGE, data=packet.text))

    def send_batch(self, packets: Sequence[Packet], frames: bytes) -> None:
        if self.gone():
            return
        queue = self.socket.queue
        for packet in packets:
            queue.put_nowait(eio_packet.Packet(eio_packet.MESSAGE, data=packet.text))

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
        trust_forwarded_for: bool = False,
        partial_frames_budget_bytes: int = 64 << 20,
        **kwargs: Any,
    ) -> None:
        # The fast lane's limits are taken and not applied (see the module docstring).
        super().__init__(async_handlers=False, serializer=WirePacket, **kwargs)
        self.max_payload_bytes = max_payload_bytes
        self.eio.logger = EngineLog()
        # python-socketio's Engine.IO message handler, with the screen in front of it.
        self.parse_message: Callable[[str, str | bytes], Awaitable[None]] = self.eio.handlers["message"]
        self.eio.on("message", self.screen)
        self._on_sent: Callable[[int, int], None] = _ignore_sent

    def count_with(self, sent: Callable[[int, int], None], refused: Callable[[str], None]) -> None:
        """``server.transport.contract.SocketServer.count_with`` (this lane refuses nothing itself)."""
        self._on_sent = sent

    async def _send_packet(self, eio_sid: str, pkt: Any) -> None:
        # Every ack and emit of python-socketio passes here; encoded once more to count its
        # bytes (the stock lane is the fallback, not the one tuned for CPU).
        encoded = pkt.encode()
        parts = encoded if isinstance(encoded, list) else [encoded]
        self._on_sent(1, sum(len(p.encode() if isinstance(p, str) else p) for p in parts))
        await super()._send_packet(eio_sid, pkt)

    async def screen(self, eio_sid: str, data: str | bytes) -> None:
        """Answer a text message that will not be handled; hand the rest to python-socketio."""
        if isinstance(data, str):
            refused = refusal(data, self.max_payload_bytes)
            if refused is not None:
                await self.refuse(eio_sid, Header.of(data), *refused)
                return
        try:
            await self.parse_message(eio_sid, data)
        except Exception as exc:  # a message python-socketio cannot take: answered, never dropped
            _MALFORMED_LOG.exception("malformed Socket.IO message", exc)
            await self.refuse(eio_sid, Header.of(data), *malformed(exc))

    async def refuse(self, eio_sid: str, header: Header, code: ErrorCode, message: str) -> None:
        """Answer a message that will not be handled (``server.transport.messages.refusal_packet``)."""
        reply = refusal_packet(self.packet_class, header.namespace, header.ack_id, (code, message))
        if reply is not None:
            await self.eio.send(eio_sid, reply.encode())

    def screen_rate(self, over_rate: Callable[[str], bool], refuse: Callable[[str, str, Any], dict[str, Any]]) -> None:
        """Not used here: each event's guard checks the rate (``handlers.socket_router``)."""

    def outlet(self, sid: str) -> Outlet | None:
        """The connection's outlet (``server.transport.contract.SocketServer``)."""
        eio_sid = self.manager.eio_sid_from_sid(sid, "/")
        socket = self.eio.sockets.get(eio_sid) if eio_sid else None
        return StockOutlet(socket) if socket is not None else None

    def attach(self, app: Any, socketio_path: str = "socket.io") -> None:
        """Serve on ``app``, ending every Engine.IO session when ``app`` shuts down."""
        super().attach(app, socketio_path)
        end_sessions_at_shutdown(app, self.eio.sockets)

    async def disconnect(self, sid: str, namespace: str | None = None, ignore_queue: bool = False) -> None:
        """Disconnect a client, its Engine.IO session included (``/`` is the only namespace)."""
        eio_sid = self.manager.eio_sid_from_sid(sid, namespace or "/")
        await super().disconnect(sid, namespace=namespace, ignore_queue=ignore_queue)
        if eio_sid is not None and eio_sid in self.eio.sockets:
            await self.eio.disconnect(eio_sid)

    def site(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        path: str,
        idle_timeout_s: float,
        observers: list[Callable[[AnsweredUpgrade], None]],
    ) -> web.BaseSite:
        """aiohttp's own TCP site: every request, WebSocket opens included, goes through aiohttp."""
        return web.TCPSite(runner, host, port)
