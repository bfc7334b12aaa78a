"""Sweep-set entries whose ZADD met their shard away are written by the next sweep.

A recording start and a listening play put their session in a sweep set (one key, on one shard
of a cluster) and go ahead when that shard does not answer; the entry waits in the node
(``storage.due.LaterEntries``) for the sweep after the shard is back. A plain redis-server
stopped and started again stands in for the shard here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from storage.due import LaterEntries
from tests.helpers import RedisProcess


@pytest_asyncio.fixture
async def own(tmp_path: Path) -> AsyncIterator[tuple[RedisProcess, Redis]]:
    """A redis-server of the test's own, to stop and start, and a client of it."""
    process = RedisProcess(tmp_path / "redis")
    process.start()
    redis = Redis.from_url(process.url, socket_connect_timeout=1, socket_timeout=1)
    try:
        yield process, redis
    finally:
        await redis.aclose()
        process.stop()


async def test_an_entry_not_written_while_redis_was_away_is_written_once_it_is_back(
    own: tuple[RedisProcess, Redis],
) -> None:
    process, redis = own
    later = LaterEntries(redis)
    await later.add("due", "written-now", 100)
    assert len(later) == 0 and await redis.zscore("due", "written-now") == 100

    process.stop()
    await later.add("due", "session-a", 200)  # no error: kept for later
    await later.add("due", "session-a", 150)  # kept twice: its latest due stays
    await later.add("due", "session-b", 300)
    assert len(later) == 2

    process.start()
    assert await later.write() == 2
    assert len(later) == 0
    assert await redis.zscore("due", "session-a") == 200
    assert await redis.zscore("due", "session-b") == 300


async def test_a_write_that_fails_again_keeps_what_it_did_not_write(own: tuple[RedisProcess, Redis]) -> None:
    process, redis = own
    later = LaterEntries(redis)
    process.stop()
    await later.add("due", "session-a", 200)
    with pytest.raises(RedisConnectionError):
        await later.write()
    assert len(later) == 1
