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
(``server.transport.fastpath.EngineWebSocket`` writes synchronously), so an idle queue means nothing of that socket
is waiting to be written.

Acks and other packets python-socketio sends go the same way
(``server.transport.fastpath.LightEngineServer.send_packet``), so the ack of a change is on the wire before
the handler's task yields to the loop. This module touches no private name of any library; the
socket attributes it reads are part of the contract listed in ``server.transport.fastpath``.
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

from engineio import packet as eio_packet

_OP_TEXT = 0x1


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


class FrameWriter(Protocol):
    """A socket's WebSocket transport that takes whole frames (``server.transport.fastpath.EngineWebSocket``)."""

    def write_frame(self, frame: bytes) -> bool:
        """Write one frame now; False when the connection is gone or has been cut as slow."""
        ...


def direct_writer(eio_socket: Any) -> FrameWriter | None:
    """The socket's WebSocket when a frame may be written to it now, in order; else None."""
    ws: FrameWriter | None = getattr(eio_socket, "sh_ws", None)
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
