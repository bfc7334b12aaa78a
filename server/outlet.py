"""Direct WebSocket delivery: one encoded frame, written to many sockets without a task each.

python-socketio sends every message through a per-socket queue drained by a writer task, and
a room broadcast creates one task per recipient; at a thousand recipients that machinery, not
the network, is the limit. For session events the bus encodes the Engine.IO/Socket.IO packet
and its WebSocket frame once, then writes the same bytes to each recipient's transport.

Ordering with python-engineio's own queue (pings, anything queued during an upgrade) is kept
by one rule: a socket whose queue is not *idle* gets the packet through that queue too. Idle
means every packet ever put has been marked done (``LightQueue.idle``), not merely that the
queue is empty: on Python 3.11 ``wait_for`` takes an item in a separate task one or two loop
turns before the writer resumes, and during those turns the queue is empty while that item is
still unwritten. The writer marks items done and writes them in one step without suspending
(:class:`DirectWebSocket` writes synchronously), so an idle queue means nothing of that socket
is waiting to be written.

Acks and other packets python-socketio sends go the same way (``LightEngineServer.send_packet``),
so the ack of a change is on the wire before the handler's task yields to the loop.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

from aiohttp.web import WebSocketResponse
from engineio import packet as eio_packet
from engineio.async_drivers.aiohttp import WebSocket as EngineIoWebSocket

log = logging.getLogger(__name__)

_OP_TEXT = 0x1
_OP_BINARY = 0x2


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


class Packet:
    """A Socket.IO EVENT packet for namespace ``/``, encoded once for every transport."""

    __slots__ = ("frame", "text")

    def __init__(self, event: str, data_json: str) -> None:
        # event names are protocol identifiers (no quoting needed); data_json is valid JSON
        self.text = f'2["{event}",{data_json}]'
        self.frame = ws_frame(b"4" + self.text.encode())


class DirectWebSocket(EngineIoWebSocket):
    """python-engineio's aiohttp WebSocket wrapper without compression, writing synchronously.

    Compression is off (as in the reference socket.io server) so that one frame fits every
    recipient. A client that stops reading is disconnected once ``slow_limit_bytes`` wait in
    its transport; it resumes from its offset when it reconnects.
    """

    slow_limit_bytes = 1 << 20

    async def __call__(self, environ: dict[str, Any]) -> WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=False)
        await self._sock.prepare(request)
        self.environ = environ
        self.transport = request.transport
        eio_socket = self.handler.__self__
        eio_socket.sh_ws = self
        try:
            await self.handler(self)
        finally:
            eio_socket.sh_ws = None
        return self._sock

    async def send(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.write_frame(ws_frame(message, _OP_BINARY))
        else:
            self.write_frame(ws_frame(message.encode()))

    def write_frame(self, frame: bytes) -> bool:
        """Write one frame now; False when the connection is gone or has been cut as slow."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        if transport.get_write_buffer_size() > self.slow_limit_bytes:
            log.warning("closing a client that does not read (%d bytes waiting)", transport.get_write_buffer_size())
            transport.abort()
            return False
        transport.write(frame)
        return True


def direct_writer(eio_socket: Any) -> DirectWebSocket | None:
    """The socket's WebSocket when a frame may be written to it now, in order; else None."""
    ws: DirectWebSocket | None = getattr(eio_socket, "sh_ws", None)
    if ws is not None and eio_socket.upgraded and not eio_socket.upgrading and eio_socket.queue.idle():
        return ws
    return None


def deliver(eio_socket: Any, packet: Packet) -> None:
    """Send ``packet`` to one Engine.IO socket, keeping its order with queued packets."""
    if eio_socket.closed or eio_socket.closing:
        return
    ws = direct_writer(eio_socket)
    if ws is not None:
        ws.write_frame(packet.frame)
    else:
        eio_socket.queue.put_nowait(eio_packet.Packet(eio_packet.MESSAGE, data=packet.text))
