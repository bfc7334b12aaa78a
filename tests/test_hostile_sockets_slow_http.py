"""Clients that ask for a large HTTP answer and never read it hold little of the server's memory
(handlers/paced_bodies.py): raw sockets with a tiny receive buffer, a real server, its RSS."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from handlers.paced_bodies import PACED_OVER_BYTES, paced_bodies
from tests.conftest import start_server
from tests.helpers import Client
from tests.raw_wire import port_of
from tests.streams.helpers import started, store_clips, stored_clip

READERS = 200
# Before the fix each such reader held a copy of what the kernel had not taken (~290 KB of a
# 286 KB /openapi.json: 58 MB for 200); paced, ~11 KB each was measured.
MAX_KB_PER_READER = 80


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))


async def stalled_reader(port: int, path: str, headers: dict[str, str] | None = None) -> socket.socket:
    """A connection that asks for ``path``, takes the answer's first byte, and reads no more."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    head = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
    # The first byte: the server has answered (before the fix, put all of the body in its buffer).
    assert await asyncio.wait_for(loop.sock_recv(sock, 1), 15) == b"H"
    return sock


async def test_readers_that_stop_reading_a_large_answer_hold_little_memory(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    srv = await start_server(redis_process.url, tmp_path)
    port = port_of(srv.url)
    readers: list[socket.socket] = []
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(srv.url + "/openapi.json") as answer:
                whole = await answer.read()
                assert answer.status == 200 and answer.content_type == "application/json"
                assert int(answer.headers["Content-Length"]) == len(whole) > PACED_OVER_BYTES
                assert json.loads(whole)["openapi"].startswith("3.")
            async with http.head(srv.url + "/openapi.json") as head:
                assert head.status == 200 and int(head.headers["Content-Length"]) == len(whole)
        before_kb = rss_kb()
        for _ in range(READERS):
            readers.append(await stalled_reader(port, "/openapi.json"))
        grown_kb = rss_kb() - before_kb
        assert grown_kb < READERS * MAX_KB_PER_READER, f"{grown_kb} kB for {READERS} stalled readers"
        async with aiohttp.ClientSession() as http:  # the server answers everyone else meanwhile
            async with http.get(srv.url + "/healthz") as health:
                assert health.status == 200
    finally:
        for sock in readers:
            sock.close()
        await srv.stop()


async def test_a_paced_answer_keeps_its_status_headers_cookies_and_close() -> None:
    body = bytes(range(256)) * 1024  # 256 KiB, over PACED_OVER_BYTES

    async def large(_: web.Request) -> web.Response:
        answer = web.Response(body=body, status=203, content_type="application/octet-stream")
        answer.headers["X-Kept"] = "yes"
        answer.set_cookie("c", "v", httponly=True)
        answer.force_close()
        return answer

    app = web.Application(middlewares=[paced_bodies])
    app.router.add_get("/large", large)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/large") as answer:
            assert (answer.status, answer.headers["X-Kept"], answer.content_type) == (
                203,
                "yes",
                "application/octet-stream",
            )
            assert answer.headers["Connection"] == "close" and int(answer.headers["Content-Length"]) == len(body)
            assert answer.cookies["c"].value == "v" and answer.cookies["c"]["httponly"]
            assert await answer.read() == body
    finally:
        await runner.cleanup()


async def test_a_reader_that_resets_a_large_answer_is_not_an_error_of_the_server(
    redis_process: Any, redis: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A client gone mid-answer is its doing: the server logged each such reset as
    ``ERROR aiohttp.server: Error handling request`` with a 33-line traceback (aiohttp hands a
    writer paused on a full socket a plain ``ConnectionError("Connection lost")``), a log any
    client could fill. The answer is larger than the kernel's buffers take: ~6 MB of clips."""
    srv = await start_server(redis_process.url, tmp_path)
    port = port_of(srv.url)
    clients: list[Client] = []
    try:
        session_id, _ = await started(srv, clients)
        clips = [stored_clip(n, segment_index=1, offset_ms=n, note="x" * 100, clipped=False) for n in range(20_000)]
        await store_clips(srv, session_id, clips)
        token = srv.token("alice")
        path = f"/api/streams/{session_id}/clips"
        with caplog.at_level(logging.DEBUG):
            for _ in range(3):
                sock = await stalled_reader(port, path, headers={"Authorization": f"Bearer {token}"})
                # The server waits for the client to take more; a reset, not a FIN, ends it.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            async with aiohttp.ClientSession() as http:  # served once the resets are taken
                async with http.get(srv.url + path, headers={"Authorization": f"Bearer {token}"}) as answer:
                    assert answer.status == 200 and len(await answer.read()) > PACED_OVER_BYTES
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert not errors, [r.getMessage() for r in errors]
    finally:
        for client in clients:
            await client.close()
        await srv.stop()
