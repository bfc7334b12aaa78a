"""The stock lane's ended sessions are collected (server/transport/stock_garbage.py): what
python-engineio and aiohttp leave of a session is reference cycles that only a full collection
frees, and ``serve`` runs those rarely; without this a stock-lane node grew ~20 KB per ended
session until one came (208 MB per 10,000 reconnects, bench/soak_mass_disconnect.py)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest

from server.transport.stock_garbage import EndedSessions
from tests.helpers import Client, RedisProcess
from tests.test_hostile_sockets_stalled_stock import stock_server, stock_sio


@pytest.fixture(autouse=True)
def no_automatic_collection() -> Iterator[None]:
    """The collector stays enabled but runs only when asked: a cycle freed is freed by the
    code under test, not by a collection this process happened to start."""
    thresholds = gc.get_threshold()
    gc.set_threshold(1 << 30, 1 << 30, 1 << 30)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


class Cycle:
    """Garbage only the cyclic collector frees."""

    def __init__(self) -> None:
        self.me = self


def cyclic_garbage() -> weakref.ref[Cycle]:
    """A reference cycle that is garbage already, in the oldest generation (as an ended
    session's is: it outlived the young collections while the session was open)."""
    garbage = Cycle()
    gc.collect()  # the cycle is alive here: it moves to the oldest generation
    gone = weakref.ref(garbage)
    del garbage
    return gone


async def freed(gone: weakref.ref[Cycle], within_s: float = 15.0) -> bool:
    async with asyncio.timeout(within_s):  # a bound, not a wait: the collection is due sooner
        while gone() is not None:
            await asyncio.sleep(0.01)
    return True


async def test_the_garbage_is_collected_once_enough_sessions_ended_and_the_node_is_quiet() -> None:
    ended = EndedSessions(after=3, quiet_s=0.05, at_most_s=30)
    gone = cyclic_garbage()
    ended.ended()
    ended.ended()
    assert ended._check is None  # fewer than `after`: nothing due
    ended.ended()
    assert ended._check is not None
    assert await freed(gone)
    assert ended._check is None and ended._ended == 0


async def test_a_busy_node_is_collected_at_the_latest_after_at_most_s() -> None:
    ended = EndedSessions(after=1, quiet_s=0.05, at_most_s=0.3)
    gone = cyclic_garbage()
    ended.ended()
    started = asyncio.get_running_loop().time()
    while gone() is not None and asyncio.get_running_loop().time() - started < 15:
        ended.opened()  # sessions keep opening: never quiet
        await asyncio.sleep(0.01)
    assert gone() is None


async def test_a_stopped_count_collects_nothing() -> None:
    ended = EndedSessions(after=1, quiet_s=0.05, at_most_s=0.3)
    ended.stop()
    ended.ended()
    assert ended._check is None


async def test_a_stock_lane_node_collects_what_its_ended_sessions_left(
    redis: Any, redis_process: RedisProcess, tmp_path: Path
) -> None:
    srv = await stock_server(redis_process.url, tmp_path)
    try:
        garbage = stock_sio(srv).garbage
        garbage.after, garbage.quiet_s = 3, 0.05
        gone = cyclic_garbage()
        for _ in range(3):
            client = await Client(srv.url, srv.token("alice")).connect(["websocket"])
            await client.close()
        assert await freed(gone)
    finally:
        await srv.stop()
