"""A client's mistake is not the server's error: what Engine.IO logs, at which level, on both lanes.

Engine.IO logged the first of each of a client's bad requests (an unknown session, a bad
transport, an old protocol version, a foreign origin) at ERROR, a long-polling POST holding a
packet of an unknown type as a WARNING traceback (answered 200, what followed it dropped), and a
shutdown cutting a long-polling POST mid-body as a CancelledError WARNING traceback (answered
200: its packets taken for sent). A failure of the server's own stays at ERROR.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import aiohttp
import pytest

from server.app import SIO_KEY
from server.transport import fastpath, stock
from server.transport.stock import EngineLog
from tests.conftest import start_server
from tests.helpers import BOTH_LANES, RedisProcess
from tests.raw_wire import RawPoller, RawWebSocket, port_of

LANES = BOTH_LANES


def _loud(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]


async def _post_begun(
    url: str, poller: RawPoller, length: int, first: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A long-polling POST of ``poller``'s session announcing ``length`` bytes, ``first`` of them sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(url))
    target = poller.url.removeprefix(url)
    head = f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {length}\r\n\r\n"
    writer.write(head.encode() + first)
    await writer.drain()
    return reader, writer


async def _answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """An HTTP answer's head and body (bounded)."""
    async with asyncio.timeout(15):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        return head, await reader.readexactly(length)


@LANES
async def test_a_clients_bad_requests_are_logged_at_info(
    redis_process: RedisProcess, redis: object, tmp_path: Path, caplog: pytest.LogCaptureFixture, lane: str
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await start_server(redis_process.url, tmp_path, transport=lane)
    base = server.url + "/socket.io/?EIO=4&transport="
    try:
        async with aiohttp.ClientSession() as http:
            for method, url, headers in (
                ("GET", base + "polling&sid=nope%0aERROR%20forged", {}),
                ("POST", base + "polling&sid=nope", {}),
                ("GET", base + "carrier-pigeon", {}),
                ("GET", server.url + "/socket.io/?EIO=3&transport=polling", {}),
                ("GET", base + "polling", {"Origin": "https://elsewhere.example"}),
            ):
                async with http.request(method, url, headers=headers, data=b"4x" if method == "POST" else None) as r:
                    assert r.status == 400, (method, url)
    finally:
        await server.stop()
    assert _loud(caplog) == []
    refused = [r.getMessage() for r in caplog.records if r.getMessage().startswith("engineio refused")]
    assert any("Invalid session nope\\nERROR forged" in message for message in refused), refused
    assert all(
        r.levelno == logging.INFO and "\n" not in r.getMessage() for r in caplog.records if "forged" in r.getMessage()
    )


@LANES
async def test_a_post_with_a_packet_of_an_unknown_type_ends_its_session(
    redis_process: RedisProcess, redis: object, tmp_path: Path, caplog: pytest.LogCaptureFixture, lane: str
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await start_server(redis_process.url, tmp_path, transport=lane)
    try:
        async with aiohttp.ClientSession() as http:
            poller = await RawPoller.open(http, server.url)
            assert await poller.post("3", "9") == 400  # as any other bad packet: not 200, half taken
            assert await poller.get() == ["HTTP 400"]  # the session is closed
    finally:
        await server.stop()
    assert _loud(caplog) == []


@LANES
async def test_a_shutdown_cutting_a_long_polling_post_answers_it_nothing_and_logs_no_warning(
    redis_process: RedisProcess, redis: object, tmp_path: Path, caplog: pytest.LogCaptureFixture, lane: str
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await start_server(redis_process.url, tmp_path, transport=lane)
    sio = server.app[SIO_KEY]
    posting = sio._posting if lane == "stock" else sio.eio._posting  # sessions whose POST is being read
    async with aiohttp.ClientSession() as http:
        poller = await RawPoller.open(http, server.url)
        reader, writer = await _post_begun(server.url, poller, 100, b"40{}")
        try:
            async with asyncio.timeout(10):
                while poller.eio_sid not in posting:
                    await asyncio.sleep(0.01)
            await server.stop()
            async with asyncio.timeout(10):
                answer = await reader.read()
        finally:
            writer.close()
    assert answer == b""  # dropped unanswered: its packets were never taken, not a 200
    assert _loud(caplog) == []


@LANES
async def test_a_long_polling_post_whose_session_ends_mid_body_is_a_400_and_logs_no_error(
    redis_process: RedisProcess,
    redis: object,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    lane: str,
) -> None:
    """An anonymous session's POST stalls mid-body; its connect deadline ends the session before
    the body's own. The fast lane takes an ended session out of Engine.IO's sockets at once, and
    python-engineio then failed its own handler: a 500 and an ERROR traceback per request, which
    anyone could make without a token (audit "slowbodies")."""
    caplog.set_level(logging.DEBUG)
    for module in (fastpath, stock):
        monkeypatch.setattr(module, "BODY_READ_TIMEOUT_S", 3.0)
    server = await start_server(redis_process.url, tmp_path, transport=lane, connect_timeout_s=0.5)
    try:
        async with aiohttp.ClientSession() as http:
            poller = await RawPoller.open(http, server.url)  # never CONNECTs
            reader, writer = await _post_begun(server.url, poller, 100, b"40{}")
            try:
                answer, body = await _answer(reader)
                # The rest of what it announced, which a server lingering to read it waits for.
                writer.write(b" " * 96)
                await writer.drain()
            finally:
                writer.close()
                await writer.wait_closed()
            assert answer.split()[1] == b"400", answer
            assert json.loads(body)["error"] == "invalid_payload", body
            assert await poller.get() == ["HTTP 400"]  # the session is gone
    finally:
        await server.stop()
    assert _loud(caplog) == []


@LANES
async def test_a_long_polling_post_finished_after_its_session_ended_is_a_400_not_a_200(
    redis_process: RedisProcess, redis: object, tmp_path: Path, caplog: pytest.LogCaptureFixture, lane: str
) -> None:
    """The body arrives whole, but after its session ended (here its connect deadline): the fast
    lane answered 200, saying its packets were delivered to a session nothing serves (audit
    "verify41"). Both lanes answer 400 invalid_payload."""
    caplog.set_level(logging.DEBUG)
    server = await start_server(redis_process.url, tmp_path, transport=lane, connect_timeout_s=0.5)
    sio = server.app[SIO_KEY]
    try:
        async with aiohttp.ClientSession() as http:
            poller = await RawPoller.open(http, server.url)  # never CONNECTs
            body = b'40{"token":"x"}'
            reader, writer = await _post_begun(server.url, poller, len(body), body[:4])
            try:
                async with asyncio.timeout(10):
                    while poller.eio_sid in sio.eio.sockets:  # the deadline ends it
                        await asyncio.sleep(0.02)
                writer.write(body[4:])  # the rest, now
                await writer.drain()
                answer, refusal = await _answer(reader)
            finally:
                writer.close()
                await writer.wait_closed()
            assert answer.split()[1] == b"400", answer
            assert json.loads(refusal)["error"] == "invalid_payload", refusal
    finally:
        await server.stop()
    assert _loud(caplog) == []


async def _upgraded(url: str, token: str) -> RawWebSocket:
    """A long-polling session joined to namespace "/", then upgraded to a WebSocket."""
    async with aiohttp.ClientSession() as http:
        poller = await RawPoller.open(http, url)
        await poller.socketio(token)
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(url))
    writer.write(
        f"GET /socket.io/?EIO=4&transport=websocket&sid={poller.eio_sid} HTTP/1.1\r\nHost: x\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert b" 101 " in await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    ws = RawWebSocket(reader, writer)
    ws.send("2probe")
    await ws.receive_until("3probe")
    ws.send("5")
    return ws


@LANES
async def test_a_websocket_frame_that_is_no_engine_io_packet_is_no_error(
    redis_process: RedisProcess, redis: object, tmp_path: Path, caplog: pytest.LogCaptureFixture, lane: str
) -> None:
    # An empty text frame: the fast lane ignores it; on the stock lane python-engineio raised
    # out of its handler and aiohttp logged "Error handling request" at ERROR. There the
    # connection ends, with its session.
    caplog.set_level(logging.DEBUG)
    server = await start_server(redis_process.url, tmp_path, transport=lane)
    sio = server.app[SIO_KEY]
    try:
        for upgraded in (False, True):
            if upgraded:
                ws = await _upgraded(server.url, server.token("alice"))
            else:
                ws, _ = await RawWebSocket.socketio(port_of(server.url), server.token("alice"))
            try:
                ws.send("")
                if lane == "fast":
                    ws.send("42[1]")  # still read: answered
                    assert '"invalid_payload"' in await ws.receive_until('42["protocol_error"')
                else:
                    assert await ws.closed(10)
                    async with asyncio.timeout(10):
                        while sio.eio.sockets:
                            await asyncio.sleep(0.01)
            finally:
                ws.close()
    finally:
        await server.stop()
    assert _loud(caplog) == []


def test_the_servers_own_failures_stay_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    engine = EngineLog()
    try:
        raise RuntimeError("a handler's bug")
    except RuntimeError:
        engine.exception("message async handler error")
    try:
        raise ValueError("not a packet")
    except ValueError:
        engine.exception("Unknown receive error")  # an undecodable frame: the client's
    levels = {r.getMessage().split(":", 2)[1].strip(): r.levelno for r in caplog.records}
    assert levels == {"message async handler error": logging.ERROR, "Unknown receive error": logging.INFO}
