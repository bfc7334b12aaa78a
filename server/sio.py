"""python-socketio's AsyncServer: events handled in order per connection, a payload cap that
answers instead of disconnecting, and reserved event names refused."""

from __future__ import annotations

import re
from typing import Any

import socketio
from socketio import packet as sio_packet

from protocol.errors import ErrorCode
from protocol.events import PROTOCOL_ERROR
from server.engine import LightEngineServer

# type, optional binary count, optional namespace, optional ack id (Socket.IO v5 framing)
_HEADER = re.compile(r"^(\d)(?:\d+-)?(/[^,]*,)?(\d+)?")
# Names python-socketio dispatches to its own lifecycle handlers: a client sending an event so
# named must not run them (it would reset its rate budget or fake a disconnect).
RESERVED_EVENTS = frozenset({"connect", "disconnect", "connect_error"})


class SessionServer(socketio.AsyncServer):
    """Refuses oversized messages with a ``payload_too_large`` ack, keeping the connection.

    Engine.IO's own ``max_http_buffer_size`` stays as the hard limit (it closes the
    connection); this softer limit below it answers the client and drops only the message.
    """

    def __init__(self, *, max_payload_bytes: int, **kwargs: Any) -> None:
        # async_handlers=False: each connection's events run one after another, in the order
        # they arrived, inside that connection's reader (Engine.IO already runs its message
        # handler inline). A slow handler holds back its own connection only; a client that
        # sends faster than it is served is held by TCP flow control, not by a growing queue.
        super().__init__(async_handlers=False, **kwargs)
        self.max_payload_bytes = max_payload_bytes

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: int | None, data: Any) -> None:
        if data and data[0] in RESERVED_EVENTS:
            if id is not None:
                body = {"ok": False, "error": ErrorCode.UNKNOWN_EVENT.value, "message": f"{data[0]!r} is reserved"}
                await self._send_packet(
                    eio_sid, self.packet_class(sio_packet.ACK, namespace=namespace or "/", data=[body], id=id)
                )
            return
        await super()._handle_event(eio_sid, namespace, id, data)

    def _engineio_server_class(self) -> type:
        return LightEngineServer

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        if len(data) > self.max_payload_bytes and eio_sid not in self._binary_packet:
            await self._refuse_oversized(eio_sid, data)
            return
        await super()._handle_eio_message(eio_sid, data)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        await super()._handle_eio_disconnect(eio_sid, reason)
        # A client that leaves while its long-poll GET is pending would otherwise keep that
        # request open until the ping timeout; an empty batch ends it now.
        eio_socket = self.eio.sockets.get(eio_sid)
        if eio_socket is not None and not eio_socket.upgraded:
            eio_socket.queue.put_nowait(None)

    async def _refuse_oversized(self, eio_sid: str, data: str | bytes) -> None:
        head = data[:64] if isinstance(data, str) else data[:64].decode("latin-1")
        match = _HEADER.match(head)
        namespace = (match.group(2) or "/,")[:-1] if match else "/"
        body = {
            "ok": False,
            "error": ErrorCode.PAYLOAD_TOO_LARGE.value,
            "message": f"messages are limited to {self.max_payload_bytes} bytes",
        }
        if match and match.group(1) in ("2", "5") and match.group(3):
            reply = self.packet_class(sio_packet.ACK, namespace=namespace, data=[body], id=int(match.group(3)))
        else:
            reply = self.packet_class(sio_packet.EVENT, namespace=namespace, data=[PROTOCOL_ERROR, body])
        await self._send_packet(eio_sid, reply)
