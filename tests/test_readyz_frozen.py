"""``/readyz`` answers 503 while Redis is frozen, instead of waiting for it.

A Redis that answers nothing and closes nothing (``SIGSTOP``, a network cut without a reset)
held every probe for as long as a command may wait (5 s on a single Redis, longer on a cluster),
past many load balancers' probe timeouts (audit "frozenmaster"). Its ``PING`` is bounded now."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import aiohttp

from tests.conftest import start_server
from tests.helpers import RedisProcess

# Past the PING's bound (2 s) with room for a busy machine, and short of the 5 s a frozen
# Redis held a probe before: one still open by then was held by it.
PROBE_TIMEOUT_S = 4.5


async def test_readyz_says_redis_is_away_while_it_is_frozen(tmp_path: Path) -> None:
    own = RedisProcess(tmp_path / "redis")
    own.start()
    assert own.process is not None
    node = await start_server(own.url, tmp_path / "node")
    frozen = False
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{node.url}/readyz") as ready:
                assert ready.status == 200, await ready.text()
            os.kill(own.process.pid, signal.SIGSTOP)
            frozen = True
            async with http.get(f"{node.url}/readyz", timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)) as probed:
                assert probed.status == 503, await probed.text()
                assert (await probed.json())["redis"] is False
            os.kill(own.process.pid, signal.SIGCONT)
            frozen = False
            for _ in range(100):  # bounded: ready again once Redis answers
                async with http.get(f"{node.url}/readyz") as again:
                    if again.status == 200:
                        break
            assert again.status == 200, await again.text()
    finally:
        if frozen:
            os.kill(own.process.pid, signal.SIGCONT)
        await node.stop()
        own.stop()
