"""A Redis outage is said by the recording leases' loop in a line a round, not a traceback.

The loop renews and sweeps recording leases every <= 2 s; with Redis away, each round logged
"recording lease round failed" at ERROR with a whole traceback (a minute away: thirty of them,
seen in every cluster failover test's log). An outage is now a WARNING of one line; a failure
of another cause keeps its traceback, once (handlers.log_throttle).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from tests.conftest import start_server
from tests.helpers import RedisProcess

LOGGER = "handlers.voice.recording"


async def test_redis_away_is_a_warning_of_one_line_a_round(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    # A 1 s lease: the loop wakes every quarter of it.
    server = await start_server(redis.url, tmp_path / "node", voice_recording_lease_ms=1000)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    try:
        redis.stop()
        started = time.monotonic()
        while len([r for r in caplog.records if r.name == LOGGER]) < 3:
            assert time.monotonic() - started < 30, "the loop said nothing of the outage"
            await asyncio.sleep(0.05)
        said = [r for r in caplog.records if r.name == LOGGER]
        assert all(r.levelno == logging.WARNING for r in said), [(r.levelname, r.getMessage()) for r in said]
        assert all(r.exc_info is None for r in said)
        assert all(r.getMessage().startswith("recording lease round: ") for r in said)
    finally:
        await server.stop()
        redis.stop()
