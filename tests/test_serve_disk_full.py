"""`serve` restarted on a full disk comes up (the operator needs it to see what fills the disk),
says in one line what it could not write, and records the embedded Redis's address once there
is room again. A real `serve` child on a tiny tmpfs of the test's own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from server.redis_embed import URL_FILE
from tests.helpers import CHILD_TEST_TIMEOUT_S, wait_until_ready
from tests.small_disk import fill, small_disk
from tests.test_redis_embed import redis_servers_on, serving, spawn, stop

pytestmark = pytest.mark.timeout(CHILD_TEST_TIMEOUT_S)  # `serve` children start

DISK_BYTES = 32 * 1024 * 1024


async def _readyz(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(url + "/readyz") as response:
        return response.status, await response.json()


async def test_serve_starts_again_on_a_full_disk(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", DISK_BYTES) as disk:
        data = disk / "var"
        async with serving(data, SESSIONHUB_VOICE_DISK_RESERVE_BYTES="0"):
            pass  # a first start: the folder, its AOF and secret exist, as on a server in use
        filler = fill(disk)
        proc, url = spawn("serve", data, SESSIONHUB_VOICE_DISK_RESERVE_BYTES="0")
        try:
            await wait_until_ready(url, proc.poll)  # /healthz: it serves
            status, ready = await _readyz(url)
            # Redis answers; it may refuse writes (it cannot append to its file) until there is room.
            assert ready["redis"] is True, ready
            assert status == 200 or str(ready["degraded"]).startswith("redis_disk_error"), ready
            assert not (data / URL_FILE).exists()
            filler.unlink()
            async with asyncio.timeout(30):  # recorded once there is room; Redis writes again
                while not (data / URL_FILE).exists() or (await _readyz(url))[0] != 200:
                    await asyncio.sleep(0.1)
        finally:
            stderr = await stop(proc)
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr, stderr
        said = [line for line in stderr.splitlines() if "cannot record" in line]
        assert len(said) == 1 and "No space left on device" in said[0], stderr
        assert not redis_servers_on(data)
