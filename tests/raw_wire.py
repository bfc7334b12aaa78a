"""Hostile-client helpers: Engine.IO/Socket.IO spoken by hand over a raw WebSocket or raw HTTP,
so a test can send what no well-behaved client library would."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import socket
import struct
from typing import Any

import aiohttp


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def client_frame(opcode: int, payload: bytes, *, final: bool = True, mask: bytes = b"\0\0\0\0") -> bytes:
    """A client-to-server WebSocket frame: masked with ``mask`` (RFC 6455 section 5.3)."""
    size = len(payload)
    first = (0x80 if final else 0) | opcode
    if size < 126:
        header = struct.pack("!BB", first, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def websocket_request(port: int, *, sid: str | None = None) -> bytes:
    """The HTTP request that opens an Engine.IO v4 WebSocket (upgrades session ``sid`` if given)."""
    key = base64.b64encode(os.urandom(16)).decode()
    upgrading = f"&sid={sid}" if sid is not None else ""
    return (
        f"GET /socket.io/?EIO=4&transport=websocket{upgrading} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


class RawWebSocket:
    """A raw Engine.IO v4 WebSocket connection; frames are sent masked with a zero key."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.close_code: int | None = None  # of the server's close frame, once received
        self.pongs: list[bytes] = []  # WebSocket pongs received (skipped by receive)

    @classmethod
    async def open(cls, port: int, *, rcvbuf: int | None = None) -> RawWebSocket:
        sock = socket.socket()
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        writer.write(websocket_request(port))
        status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b" 101 " in status.split(b"\r\n", 1)[0], status
        return cls(reader, writer)

    @classmethod
    async def socketio(cls, port: int, token: str) -> tuple[RawWebSocket, str]:
        """Open, authenticate on namespace ``/``; returns the connection and its Socket.IO sid."""
        ws = await cls.open(port)
        await ws.receive_until("0{")
        ws.send('40{"token":"' + token + '"}')
        sid = json.loads((await ws.receive_until("40"))[2:])["sid"]
        return ws, sid

    def _frame(self, opcode: int, payload: bytes) -> None:
        self.writer.write(client_frame(opcode, payload))

    def send_frame(self, opcode: int, payload: bytes, *, final: bool = True, mask: bytes | None = None) -> None:
        """One frame as given (a fragment when not ``final``), masked with ``mask`` (random if None)."""
        self.writer.write(client_frame(opcode, payload, final=final, mask=os.urandom(4) if mask is None else mask))

    def send(self, text: str) -> None:
        self._frame(0x1, text.encode())

    def send_binary(self, data: bytes) -> None:
        self._frame(0x2, data)

    async def receive(self, timeout: float = 5) -> str | bytes:
        first, second = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
        payload = await self.reader.readexactly(size)
        opcode = first & 0x0F
        if opcode == 0x8:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            raise ConnectionError("closed by the server")
        if opcode == 0xA:
            self.pongs.append(payload)
            return await self.receive(timeout)
        return payload.decode() if opcode == 0x1 else payload

    async def receive_until(self, prefix: str, timeout: float = 5) -> str:
        """The next text frame starting with ``prefix`` (pings are answered on the way)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            message = await self.receive(max(0.01, deadline - asyncio.get_running_loop().time()))
            if message == "2":
                self.send("3")
            if isinstance(message, str) and message.startswith(prefix):
                return message

    async def ack(self, ack_id: int, timeout: float = 5) -> Any:
        """The body of the ack numbered ``ack_id``."""
        return json.loads((await self.receive_until(f"43{ack_id}", timeout))[2 + len(str(ack_id)) :])[0]

    async def closed(self, timeout: float) -> bool:
        """True once the server closed the connection within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if not await self.reader.read(65536):
                        return True
        except TimeoutError:
            return False
        except (ConnectionError, OSError):
            return True

    def close(self) -> None:
        self.writer.close()


async def http_exchange(port: int, request: bytes, *, timeout: float = 5) -> tuple[int, bytes]:
    """Send one raw HTTP/1.1 request; the status and the body (by its Content-Length)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(timeout):
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
    finally:
        writer.close()
    return int(head.split(b" ", 2)[1]), body


class RawPoller:
    """A raw Engine.IO v4 long-polling client: each GET and POST is sent by hand."""

    def __init__(self, http: aiohttp.ClientSession, base: str, eio_sid: str) -> None:
        self.http, self.base, self.eio_sid = http, base, eio_sid

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, url: str) -> RawPoller:
        base = f"{url}/socket.io/?EIO=4&transport=polling"
        async with http.get(base) as resp:
            opened = await resp.text()
        assert opened.startswith("0{"), opened
        return cls(http, base, json.loads(opened[1:])["sid"])

    @property
    def url(self) -> str:
        return f"{self.base}&sid={self.eio_sid}"

    async def post(self, *packets: str, timeout: float = 5) -> int:
        body = io.BytesIO("\x1e".join(packets).encode())
        async with asyncio.timeout(timeout), self.http.post(self.url, data=body) as resp:
            await resp.read()
            return resp.status

    async def get(self, timeout: float = 5) -> list[str]:
        async with asyncio.timeout(timeout), self.http.get(self.url) as resp:
            body = await resp.text()
        return body.split("\x1e") if resp.status == 200 else [f"HTTP {resp.status}"]

    async def socketio(self, token: str) -> str:
        """Authenticate on namespace ``/``; the Socket.IO sid."""
        await self.post('40{"token":"' + token + '"}')
        packets = await self.get()
        return str(json.loads(next(p for p in packets if p.startswith("40"))[2:])["sid"])
