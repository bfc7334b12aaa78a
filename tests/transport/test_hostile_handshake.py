"""Hostile WebSocket opening handshakes and close frames (issue 20, finding 10).

The refused handshakes are answered alike on both lanes (the stock lane checks a WebSocket
opening before Engine.IO sees it, and gives Engine.IO's own 400s the server's error shape). The
close frames are the fast lane's WebSocket reader (server/transport/leanws.py): on the stock lane
aiohttp answers every client close with 1000 (see server/transport/stock.py), so `make test-stock`
skips those."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct

import pytest

from tests.helpers import ServerUnderTest, fast_lane_only
from tests.raw_wire import RawWebSocket, client_frame, http_exchange, port_of

PATH = "/socket.io/?EIO=4&transport=websocket"


def _key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def _request(headers: str, *, version: str = "1.1", path: str = PATH) -> bytes:
    return f"GET {path} HTTP/{version}\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode()


async def _refused(server: ServerUnderTest, request: bytes) -> dict[str, object]:
    status, body = await http_exchange(port_of(server.url), request)
    assert status == 400, (status, body)
    answer = json.loads(body)  # JSON, never a bare string
    assert isinstance(answer, dict) and answer["error"] == "invalid_payload", answer
    return answer


async def test_no_connection_upgrade_is_a_400_json(server: ServerUnderTest) -> None:
    await _refused(
        server, _request(f"Upgrade: websocket\r\nSec-WebSocket-Key: {_key()}\r\nSec-WebSocket-Version: 13\r\n")
    )


async def test_no_upgrade_header_is_a_400_json(server: ServerUnderTest) -> None:
    await _refused(
        server, _request(f"Connection: Upgrade\r\nSec-WebSocket-Key: {_key()}\r\nSec-WebSocket-Version: 13\r\n")
    )


async def test_an_unknown_session_is_a_400_json(server: ServerUnderTest) -> None:
    await _refused(server, _request("", path="/socket.io/?EIO=4&transport=polling&sid=nosuchsession"))


async def test_an_http_1_0_upgrade_is_refused(server: ServerUnderTest) -> None:
    headers = (
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {_key()}\r\nSec-WebSocket-Version: 13\r\n"
    )
    await _refused(server, _request(headers, version="1.0"))


async def test_a_repeated_key_is_refused(server: ServerUnderTest) -> None:
    headers = (
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {_key()}\r\n"
        f"Sec-WebSocket-Key: {_key()}\r\nSec-WebSocket-Version: 13\r\n"
    )
    await _refused(server, _request(headers))


async def _close_answer(server: ServerUnderTest, payload: bytes) -> int:
    ws = await RawWebSocket.open(port_of(server.url))
    try:
        await ws.receive_until("0{")
        ws.writer.write(client_frame(0x8, payload, mask=os.urandom(4)))
        async with asyncio.timeout(5):
            while True:
                data = await ws.reader.read(65536)
                assert data, "closed without a close frame"
                at = data.find(b"\x88")
                if at >= 0:
                    return int(struct.unpack("!H", data[at + 2 : at + 4])[0])
    finally:
        ws.writer.close()


@fast_lane_only
@pytest.mark.parametrize("code", [1004, 1005, 1006, 1015, 1016, 2999, 999, 5000])
async def test_a_reserved_close_code_is_answered_with_1002(server: ServerUnderTest, code: int) -> None:
    assert await _close_answer(server, struct.pack("!H", code)) == 1002


@fast_lane_only
@pytest.mark.parametrize("code", [1000, 1001, 1003, 1011, 3000, 4999])
async def test_a_valid_close_code_is_echoed(server: ServerUnderTest, code: int) -> None:
    assert await _close_answer(server, struct.pack("!H", code)) == code
