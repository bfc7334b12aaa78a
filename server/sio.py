"""python-socketio's AsyncServer with a payload cap that answers instead of disconnecting."""

from __future__ import annotations

import re
from typing import Any

import socketio
from socketio import packet as sio_packet

from server.engine import LightEngineServer

# type, optional binary count, optional namespace, optional ack id (Socket.IO v5 framing)
_HEADER = re.compile(r"^(\d)(?:\d+-)?(/[^,]*,)?(\d+)?")
PROTOCOL_ERROR_EVENT = "protocol_error"


class SessionServer(socketio.AsyncServer):
    """Refuses oversized messages with a ``payload_too_large`` ack, keeping the connection.

    Engine.IO's own ``max_http_buffer_size`` stays as the hard limit (it closes the
    connection); this softer limit below it answers the client and drops only the message.
    """

    def __init__(self, *, max_payload_bytes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_payload_bytes = max_payload_bytes

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
            "error": "payload_too_large",
            "message": f"messages are limited to {self.max_payload_bytes} bytes",
        }
        if match and match.group(1) in ("2", "5") and match.group(3):
            reply = self.packet_class(sio_packet.ACK, namespace=namespace, data=[body], id=int(match.group(3)))
        else:
            reply = self.packet_class(sio_packet.EVENT, namespace=namespace, data=[PROTOCOL_ERROR_EVENT, body])
        await self._send_packet(eio_sid, reply)
