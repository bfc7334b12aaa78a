"""A server stopped just after it starts leaves no background loop running (handlers/background.py).

Its loops (node heartbeat, revocation watch, listening sweeper, voice recording leases) make their
first round at once, in Redis calls; redis-py may swallow a cancellation that lands there. The
loop then slept its whole interval: the shutdown waited the heartbeat's 5 s (STOP_WAIT_S) and went
on without it, the revocation watch's 2 s, and every quick test's teardown took 2-5 s.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from redis.asyncio import Redis

from tests.conftest import start_server
from tests.helpers import RedisProcess

LOOPS = {
    "NodeHeartbeat._beat_forever",
    "RevocationWatch._watch_forever",
    "Sweeper._run",
    "RecordingKeeper._run",
}
# Stopped at once, a round is nearly always in its first Redis call: a few tries make it sure.
TRIES = 3
# Intervals far past the shutdown's 5 s wait: a loop left sleeping one is still running after the
# stop (with the defaults it ended during that wait, only late), so no timing bound is needed.
LONG_INTERVALS = {"admin_node_heartbeat_s": 300.0, "revocation_poll_s": 60.0, "listening_sweep_interval_s": 300.0}


async def test_a_server_stopped_as_it_starts_leaves_no_background_loop_running(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> None:
    # Only this test's servers' loops: another test's (a server whose start failed) is not ours.
    before = set(asyncio.all_tasks())
    for attempt in range(TRIES):
        data_dir = tmp_path / str(attempt)
        data_dir.mkdir()
        server = await start_server(redis_process.url, data_dir, **LONG_INTERVALS)
        started = time.perf_counter()
        await server.stop()
        took_s = time.perf_counter() - started
        left = [
            task
            for task in asyncio.all_tasks()
            if task not in before and not task.done() and getattr(task.get_coro(), "__qualname__", "") in LOOPS
        ]
        assert left == [], f"try {attempt}: stopped in {took_s:.1f} s, still running: {left}"
