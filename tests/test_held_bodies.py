"""Route bodies that arrive in pieces count in the node's budget of unfinished requests.

Anonymous clients each sent most of a 64 KiB pattern body and stalled: every body was held in
memory until its read deadline (10 s), counted by no budget, and the client could open the next
at once (300 connections held 20 MB more; an address's cap allows 4,100; audit "slowbodies").
They count now in the budget the WebSocket frames and long-polling bodies count in
(``handlers.held_bytes``, ``SESSIONHUB_PARTIAL_FRAMES_BUDGET_BYTES``): past it, a body that
grows is refused at once, and an honest body that arrives whole is still served.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from handlers.held_bytes import HELD_BYTES_KEY
from server.app import SIO_KEY, build_sio
from tests.conftest import start_server
from tests import helpers
from tests.helpers import RedisProcess, ServerUnderTest, serving_lane
from tests.raw_wire import port_of

BUDGET = 1 << 20  # the setting's least
ANNOUNCED = 65_536  # the pattern API's body cap
SENT = 60_000  # most of it, then nothing
STALLERS = 24  # 1.4 MB of them: past the budget


@pytest_asyncio.fixture
async def small_budget(redis_process: RedisProcess, redis: object, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    server = await start_server(redis_process.url, tmp_path, partial_frames_budget_bytes=BUDGET)
    try:
        yield server
    finally:
        await server.stop()


async def stall(server: ServerUnderTest) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server.url))
    head = (
        "POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {ANNOUNCED}\r\n\r\n"
    )
    writer.write(head.encode() + b'{"name": "' + b"x" * (SENT - 10))
    await writer.drain()
    return reader, writer


async def test_stalled_route_bodies_past_the_budget_are_refused_and_an_honest_one_is_served(
    small_budget: ServerUnderTest,
) -> None:
    server = small_budget
    budget = server.app[HELD_BYTES_KEY]
    if serving_lane() == "fast":  # one budget: the frames' and the routes' (the stock lane counts no frames)
        assert server.app[SIO_KEY].eio.partial_frames is budget
    assert budget.limit == BUDGET
    connections = [await stall(server) for _ in range(STALLERS)]
    try:
        # Each holds what it sent until its deadline; those past the budget are answered at once.
        refused = 0
        async with asyncio.timeout(8):  # well before the bodies' 10 s deadline
            for reader, _ in connections[-4:]:
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 400"), head
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = json.loads(await reader.readexactly(length))
                assert body == {"error": "Too many unfinished request bodies: send it again"}, body
                refused += 1
        assert refused == 4
        assert budget.held <= BUDGET
        # An honest client's body arrives whole in one read: never counted, served.
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{server.url}/api/sessions", json={"name": "honest"}) as response,
        ):
            assert response.status == 201, await response.text()
    finally:
        for _, writer in connections:
            writer.close()
    # Gone, they give back all they held.
    async with asyncio.timeout(10):
        while budget.held:
            await asyncio.sleep(0.02)


@pytest.mark.skipif(serving_lane() == "stock", reason="the stock lane counts no frames: only the fast lane's budget")
def test_a_socket_server_built_alone_takes_the_settings_budget(tmp_path: Path) -> None:
    """``build_sio`` without the app's budget kept the fast lane's built-in 64 MiB, whatever
    ``SESSIONHUB_PARTIAL_FRAMES_BUDGET_BYTES`` said (audit "verify41")."""
    settings = helpers.test_settings(
        "redis://127.0.0.1:1", tmp_path, transport="fast", partial_frames_budget_bytes=3 << 20
    )
    assert build_sio(settings).eio.partial_frames.limit == 3 << 20
