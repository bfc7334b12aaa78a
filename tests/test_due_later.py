"""Sweep-set entries whose ZADD met their shard away are written by the next sweep.

A recording start and a listening play put their session in a sweep set (one key, on one shard
of a cluster) and go ahead when that shard does not answer; the entry waits in the node
(``storage.due.LaterEntries``) for the sweep after the shard is back. A plain redis-server
stopped and started again stands in for the shard here."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from storage.due import LaterEntries
from tests.helpers import RedisProcess


async def test_an_entry_not_written_while_redis_was_away_is_written_once_it_is_back(tmp_path: Path) -> None:
    own = RedisProcess(tmp_path / "redis")
    own.start()
    redis = Redis.from_url(own.url, socket_connect_timeout=1, socket_timeout=1)
    later = LaterEntries(redis)
    try:
        await later.add("due", "written-now", 100)
        assert len(later) == 0 and await redis.zscore("due", "written-now") == 100

        own.stop()
        await later.add("due", "session-a", 200)  # no error: kept for later
        await later.add("due", "session-a", 150)  # kept twice: its latest due stays
        await later.add("due", "session-b", 300)
        assert len(later) == 2

        own.start()
        assert await later.write() == 2
        assert len(later) == 0
        assert await redis.zscore("due", "session-a") == 200
        assert await redis.zscore("due", "session-b") == 300
    finally:
        await redis.aclose()
        own.stop()


async def test_a_write_that_fails_again_keeps_what_it_did_not_write(tmp_path: Path) -> None:
    own = RedisProcess(tmp_path / "redis")
    own.start()
    redis = Redis.from_url(own.url, socket_connect_timeout=1, socket_timeout=1)
    later = LaterEntries(redis)
    try:
        own.stop()
        await later.add("due", "session-a", 200)
        with pytest.raises(RedisConnectionError):
            await later.write()
        assert len(later) == 1
    finally:
        await redis.aclose()
        own.stop()
