"""The fast lane's outlets: one encoded frame, written to many sockets without a task each.

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
the handler's task yields to the loop. :class:`FastOutlet` is the fast lane's
``server.transport.contract.Outlet``. This module touches no private name of any library; the
socket attributes it reads are part of the contract listed in ``server.transport.fastpath``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from engineio import packet as eio_packet

# Re-exported: the lean WebSocket builds its frames with it.
from server.transport.contract import Packet
from server.transport.contract import ws_frame as ws_frame


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


class FastOutlet:
    """A connection of the fast lane (``server.transport.contract.Outlet``)."""

    __slots__ = ("socket",)

    def __init__(self, eio_socket: Any) -> None:
        self.socket = eio_socket

    def send(self, packet: Packet) -> None:
        deliver(self.socket, packet)

    def send_batch(self, packets: Sequence[Packet], frames: bytes) -> None:
        socket = self.socket
        # The common case, kept lean (the bus's fan-out calls this per member per round): a
        # socket whose WebSocket started writes its queue through (LightQueue.attach), so
        # nothing of it waits anywhere and the frames may go straight to the connection --
        # one write for the round; the transport's buffer limit is the slow-client cut.
        ws = getattr(socket, "sh_ws", None)
        transport = ws.transport if ws is not None else None
        if transport is not None and socket.queue.sink is not None:
            transport.write(frames)
            return
        if socket.closed or socket.closing:
            return
        writer = direct_writer(socket)
        if writer is not None:
            writer.write_frame(frames)
            return
        queue = socket.queue
        for packet in packets:
            queue.put_nowait(eio_packet.Packet(eio_packet.MESSAGE, data=packet.text))

    def gone(self) -> bool:
        socket = self.socket
        return bool(socket.closed or socket.closing)
