"""A node's background loops go on after a failure that is not a Redis outage.

The heartbeat, the revocation watch and the deletion follow-ups caught only Redis's own errors
(``REDIS_AWAY``): any other exception ended the loop for good, silently, and the node ran on
without it (no heartbeat on /admin, revoked devices no longer signed out, owed deletions never
settled). redis-py's cluster client raised such an error as a whole cluster came back (fixed in
storage/cluster_connection.py), and a bug in a round would do the same. Each loop now logs an
unexpected failure once with its traceback, counts its repeats, and goes on at its interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import handlers.cleanups
from handlers.admin.nodes import NodeHeartbeat
from handlers.revocation_watch import RevocationWatch
from tests.background_loops import BACKGROUND_LOOPS, FAST_LOOPS, running_loops
from tests.conftest import start_server
from tests.helpers import RedisProcess

FAILURES = 5  # rounds of each loop that fail before the loops work again


class Broken(Exception):
    """An error no Redis client raises: a bug in a round."""


def failing_first(
    real: Callable[..., Awaitable[Any]], calls: dict[str, int], name: str
) -> Callable[..., Awaitable[Any]]:
    """``real``, except that its first FAILURES calls raise :class:`Broken`."""

    async def step(*args: Any, **kwargs: Any) -> Any:
        calls[name] = calls.get(name, 0) + 1
        if calls[name] <= FAILURES:
            raise Broken(f"{name} round {calls[name]}")
        return await real(*args, **kwargs)

    return step


async def test_a_failure_that_is_not_an_outage_ends_no_background_loop(
    redis_process: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: dict[str, int] = {}
    monkeypatch.setattr(NodeHeartbeat, "beat", failing_first(NodeHeartbeat.beat, calls, "beat"))
    monkeypatch.setattr(RevocationWatch, "poll", failing_first(RevocationWatch.poll, calls, "poll"))
    monkeypatch.setattr(
        handlers.cleanups, "retry_owed", failing_first(handlers.cleanups.retry_owed, calls, "retry_owed")
    )
    caplog.set_level(logging.WARNING)
    server = await start_server(redis_process.url, tmp_path, **FAST_LOOPS)
    try:
        # Every loop goes past its failing rounds, and is still running.
        started = time.monotonic()
        while any(calls.get(name, 0) <= FAILURES + 1 for name in ("beat", "poll", "retry_owed")):
            assert set(BACKGROUND_LOOPS.values()) <= running_loops(), f"a loop ended on its failure: {calls}"
            assert time.monotonic() - started < 30, calls
            await asyncio.sleep(0.05)
        assert set(BACKGROUND_LOOPS.values()) <= running_loops(), f"a loop ended on its failure: {calls}"
        # The heartbeat works again: removed, it is written back by the loop.
        keys = server.services.keys
        await server.services.redis.delete(keys.admin_nodes())
        started = time.monotonic()
        while not await server.services.redis.hlen(keys.admin_nodes()):
            assert time.monotonic() - started < 30, "the heartbeat was not written again"
            await asyncio.sleep(0.05)
        # Each failure is said once with its traceback; its repeats are counted, not logged.
        for logger in BACKGROUND_LOOPS:
            traced = [r for r in caplog.records if r.name == logger and r.exc_info is not None]
            assert len(traced) == 1, (logger, [r.getMessage() for r in traced])
            assert "Broken" in traced[0].getMessage()
    finally:
        await server.stop()
