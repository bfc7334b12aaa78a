"""A client that resets its connection in the middle of a request body: its doing, not the
server's. Nothing is logged as an error for it (a cut long-polling POST logged Engine.IO's
"post request handler error" with a traceback)."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable

from pathlib import Path

import aiohttp
import pytest

from server.app import SIO_KEY
from tests.conftest import start_server
from tests.helpers import BOTH_LANES, RedisProcess
from tests.raw_wire import RawPoller, port_of


def _reset(sock: socket.socket) -> None:
    """Close with an RST: SO_LINGER on with a zero timeout drops what is unsent and resets."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def _half_a_post_then_reset(port: int, target: str, reading: Callable[[], bool]) -> None:
    """Send a POST's head and a tenth of its body, wait until the server reads it, and reset."""
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        head = (
            f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain;charset=UTF-8\r\n"
            "Content-Length: 1000\r\n\r\n"
        )
        await loop.sock_sendall(sock, head.encode() + b"4" * 100)
        async with asyncio.timeout(10):
            while not reading():
                await asyncio.sleep(0.01)
        _reset(sock)


async def _logged(caplog: pytest.LogCaptureFixture, message: str, timeout: float = 10) -> None:
    """Wait until a record saying ``message`` is logged (the request log's line of a request:
    its handler has finished)."""
    async with asyncio.timeout(timeout):
        while not any(message in record.getMessage() for record in caplog.records):
            await asyncio.sleep(0.02)


@BOTH_LANES
async def test_a_long_polling_post_reset_midway_logs_no_error(
    redis_process: RedisProcess, redis: object, tmp_path: Path, caplog: pytest.LogCaptureFixture, lane: str
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await start_server(redis_process.url, tmp_path, transport=lane)
    try:
        async with aiohttp.ClientSession() as http:
            poller = await RawPoller.open(http, server.url)
            sio = server.app[SIO_KEY]
            posting = sio._posting if lane == "stock" else sio.eio._posting  # sessions whose POST is read
            target = poller.url.removeprefix(server.url)
            await _half_a_post_then_reset(port_of(server.url), target, lambda: poller.eio_sid in posting)
            await _logged(caplog, "POST /socket.io/")
            # The session lives on: the client may post again on a new connection.
            assert await poller.post("40{}") == 200
    finally:
        await server.stop()
    loud = [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == []
    cut = [r for r in caplog.records if "reset by its client" in r.getMessage()]
    assert len(cut) == 1 and cut[0].levelno <= logging.INFO
