"""The few bytes of WebSocket, Engine.IO v4 and Socket.IO v5 the load generator speaks.

Only what a text-framed client needs: the upgrade request, masked client frames and the
packet prefixes it recognises. Parsing server frames lives in lean_client.py, inline in
its hot loop.
"""

from __future__ import annotations

import base64
import json
import os
import struct

WS_TEXT = 0x1
WS_CLOSE = 0x8
WS_PING = 0x9
WS_PONG = 0xA

# Engine.IO packet types (first character), then Socket.IO's (second character of a "4").
EIO_OPEN = ord("0")
EIO_PING = ord("2")
EIO_MESSAGE = ord("4")
SIO_CONNECT = ord("0")
SIO_DISCONNECT = ord("1")
SIO_EVENT = ord("2")
SIO_ACK = ord("3")
SIO_CONNECT_ERROR = ord("4")

# Any mask key is valid; an all-zero one leaves the payload as it is, so nothing is XORed.
_ZERO_MASK = b"\x00\x00\x00\x00"


def upgrade_request(host: str, port: int) -> bytes:
    """The HTTP request that opens an Engine.IO WebSocket (no compression offered)."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode()


def client_frame(payload: bytes, opcode: int = WS_TEXT) -> bytes:
    """A final, masked client-to-server frame."""
    size = len(payload)
    first = 0x80 | opcode
    if size < 126:
        header = struct.pack("!BB", first, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    return header + _ZERO_MASK + payload


def connect_packet(token: str) -> bytes:
    """Socket.IO CONNECT to namespace ``/`` carrying the JWT as ``auth.token``."""
    return b"40" + json.dumps({"token": token}, separators=(",", ":")).encode()


def emit_packet(ack_id: int, event: str, data_json: str) -> bytes:
    """Socket.IO EVENT with an ack id; ``data_json`` is already-encoded JSON."""
    return f'42{ack_id}["{event}",{data_json}]'.encode()


def parse_ack(text: bytes) -> tuple[int, object]:
    """``43<id>[arg]`` -> (id, arg)."""
    bracket = text.index(b"[", 2)
    args = json.loads(text[bracket:])
    return int(text[2:bracket]), (args[0] if args else None)
