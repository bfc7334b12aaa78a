"""Unfinished frames have a ceiling across all connections, and none outlives its connection
(issue 20, finding 1).

A client may send up to a message's limit of one frame and then nothing: before, each such
connection pinned its part (and the memory stayed after the server closed it). Now the bytes
held in unfinished frames count against ``SESSIONHUB_PARTIAL_FRAMES_BUDGET_BYTES``; past it, a
connection whose unfinished part grows is closed with 1009, and a closed connection gives its
part back.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from server.app import SIO_KEY
from tests.conftest import start_server
from tests.helpers import fast_lane_only
from tests.raw_wire import RawWebSocket, port_of

pytestmark = fast_lane_only

BUDGET = 1 << 20
FRAME = 700 * 1024  # the size the frame header announces (under the 1 MiB message limit)
PART = 400 * 1024  # what each client sends of it


def partial_frame() -> bytes:
    """The header of a FRAME-byte masked text frame and the first PART bytes of its payload."""
    return struct.pack("!BBQ", 0x81, 0x80 | 127, FRAME) + os.urandom(4) + b"x" * PART


async def wait_for(condition: Callable[[], bool], what: str, budget: Any, timeout: float = 5) -> None:
    """Wait for ``condition`` (within the connect deadline: these clients never join Socket.IO)."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"{what}: {budget.held} bytes held") from None


async def refused_with(ws: RawWebSocket, timeout: float = 10) -> int | None:
    """The close code the server ends ``ws`` with (its Engine.IO OPEN is read on the way); None
    when the close frame was lost to the reset that closing with unread bytes sends."""
    try:
        while True:
            await ws.receive(timeout)
    except ConnectionError:
        return ws.close_code
    except asyncio.IncompleteReadError:
        return ws.close_code


async def test_unfinished_frames_have_a_ceiling_and_are_given_back(redis_process: Any, tmp_path: Path) -> None:
    srv = await start_server(redis_process.url, tmp_path, partial_frames_budget_bytes=BUDGET)
    budget = srv.app[SIO_KEY].eio.partial_frames
    port = port_of(srv.url)
    opened: list[RawWebSocket] = []
    try:
        assert budget.limit == BUDGET
        for _ in range(2):  # no token needed: the frame comes before any Socket.IO CONNECT
            ws = await RawWebSocket.open(port)
            opened.append(ws)
            ws.writer.write(partial_frame())
        await wait_for(lambda: budget.held >= 2 * PART, "two parts held", budget)
        third = await RawWebSocket.open(port)
        opened.append(third)
        third.writer.write(partial_frame())
        assert await refused_with(third) in (1009, None)
        assert budget.held <= 2 * PART + 256 * 1024  # what it held is given back
        opened[0].close()  # a closed connection gives its part back
        await wait_for(
            lambda: budget.held <= PART + 64, "the first part given back", budget
        )  # B's part and frame header
        fourth = await RawWebSocket.open(port)
        opened.append(fourth)
        fourth.writer.write(partial_frame())
        await wait_for(lambda: budget.held >= 2 * PART, "the fourth part held", budget)
        for ws in opened:
            ws.close()
        await wait_for(lambda: budget.held == 0, "every part given back", budget)
    finally:
        for ws in opened:
            ws.close()
        await srv.stop()
