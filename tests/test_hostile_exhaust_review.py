"""What one stream owner can make Redis hold for a moment, many times over: copies of its clips.

``GET /api/streams/{id}/clips`` and ``…/moments`` read every clip; a stream of more than 1,000
is copied in Redis first (a consistent copy read in pages, deleted after). Measured before this
bound on a real server: 200 concurrent reviews of a 2,500-clip stream by its owner held 200
copies at once, 245 MB more of Redis (one address may hold 1000 HTTP connections), at
``noeviction`` enough to fail everyone's writes. Now a user's reads of every clip run two at a
time per process; the others wait their turn (handlers/streams/whole_reads.py). Since then the
reads take no copy at all: a big stream's clips are scanned in pages where they are.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest_asyncio
from redis.asyncio import Redis

from tests.helpers import RedisProcess, ServerUnderTest

CLIPS = 1_100  # past the 1,000 under which a read takes no copy
READS = 16


@pytest_asyncio.fixture
async def stream(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> AsyncIterator[tuple[ServerUnderTest, str]]:
    from tests.conftest import start_server

    srv = await start_server(redis_process.url, tmp_path, clips_cooldown_s=0, clips_max_per_viewer=CLIPS)
    headers = {"Authorization": f"Bearer {srv.token('streamer')}"}
    viewer = {"Authorization": f"Bearer {srv.token('viewer')}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{srv.url}/api/streams", json={"title": "raid"}, headers=headers) as resp:
            session_id = str((await resp.json())["session"]["session_id"])
        async with http.post(f"{srv.url}/api/streams/{session_id}/state", json={"action": "start"}, headers=headers):
            pass

        async def clip() -> None:
            body = {"note": "n" * 100}
            async with http.post(f"{srv.url}/api/streams/{session_id}/clips", json=body, headers=viewer) as resp:
                assert resp.status == 201, await resp.text()

        for _ in range(CLIPS // 50):
            await asyncio.gather(*[clip() for _ in range(50)])
    yield srv, session_id
    await srv.stop()


async def test_an_owners_concurrent_reads_of_every_clip_hold_at_most_two_copies(
    stream: tuple[ServerUnderTest, str], redis: Redis
) -> None:
    """16 concurrent reviews and moments of a 1,100-clip stream by its owner are all answered
    with every clip, while Redis holds no copy of the clips (sampled as they run; before the
    reads scanned the clips where they are, at most two at once, and 16 without that bound)."""
    srv, session_id = stream
    headers = {"Authorization": f"Bearer {srv.token('streamer')}"}
    most = 0
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal most
        while not done.is_set():
            copies = [key async for key in redis.scan_iter(match="*clips_copy*", count=10_000)]
            most = max(most, len(copies))
            await asyncio.sleep(0.002)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def read(path: str) -> int:
            async with http.get(f"{srv.url}/api/streams/{session_id}/{path}", headers=headers) as resp:
                body = await resp.json()
                assert resp.status == 200, body
                if path == "clips":
                    return int(body["clip_count"])
                return sum(int(m["count"]) for m in body["moments"])

        watcher = asyncio.create_task(watch())
        try:
            counts = await asyncio.gather(*[read("clips" if n % 2 else "moments") for n in range(READS)])
        finally:
            done.set()
            await watcher
    assert counts == [CLIPS] * READS
    # The reads scan the clips themselves now (StreamSessions._scan): no copy at all.
    assert most == 0, most
    assert [key async for key in redis.scan_iter(match="*clips_copy*")] == []
