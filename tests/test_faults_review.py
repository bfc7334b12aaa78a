"""The paged review under Redis losing writes and a node killed mid-build: after the next read,
the summary and the pages say exactly what the clips hash holds.

The review index is kept by its readers from the session's log (storage/streams/review.py). A
Redis that loses its last second (an OS crash under ``appendfsync everysec``, a failover to a
lagging replica) is reproduced as in tests/test_rollback.py: a session's keys are DUMPed and
RESTOREd behind the server's back, here all but the review index's, so the index reflects a
history the log no longer holds (or the index alone is lost).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from storage.streams.review import BUILD_TTL_MS, INDEX_IDLE_MS
from tests.helpers import Client, RedisProcess, ServerUnderTest, free_port
from tests.rollback import Rollback
from tests.streams.helpers import connect, http, started, store_clips, stored_clip
from tests.test_processes import ROOT, _wait_ready, node_env


def but_the_index(raw: Redis, server: ServerUnderTest, session_id: str) -> Rollback:
    """A session's keys, but its review index's, as they were: what Redis comes back with."""
    keys = server.services.keys
    spared = {keys.stream_review_index(session_id), keys.stream_review_meta(session_id)}
    return Rollback(raw, session_id=session_id, spared=spared)


async def click(server: ServerUnderTest, clients: list[Client], session_id: str, viewer: str) -> str:
    """A viewer's clip (each viewer clicks once: the cooldown); its id."""
    ack = await (await connect(server, clients, viewer)).call("clip_submit", {"session_id": session_id})
    assert ack["ok"], ack
    return str(ack["clip"]["clip_id"])


async def delete(server: ServerUnderTest, session_id: str, clip_id: str) -> None:
    status, body = await http(server, "DELETE", f"/api/streams/{session_id}/clips/{clip_id}")
    assert status == 200, body


async def review_says(server: ServerUnderTest, session_id: str) -> tuple[set[str], set[str], int, int]:
    """What the review says: the summary's last clips, the first segment's pages (all of
    them), the summary's total and the segment's count."""
    status, summary = await http(server, "GET", f"/api/streams/{session_id}/review", params={"last": "200"})
    assert status == 200, summary
    paged: set[str] = set()
    after: str | None = None
    while True:
        params = {"segment": "1", "limit": "2", **({"after": after} if after else {})}
        status, page = await http(server, "GET", f"/api/streams/{session_id}/review/clips", params=params)
        assert status == 200, page
        paged |= {c["clip_id"] for c in page["clips"]}
        after = page["next"]
        if after is None:
            break
    [segment] = summary["segments"]
    return {c["clip_id"] for c in summary["last"]}, paged, summary["clip_count"], segment["clip_count"]


async def held(server: ServerUnderTest, session_id: str) -> set[str]:
    found: Any = await server.services.redis.hkeys(server.services.keys.stream_clips(session_id))
    return {str(clip_id) for clip_id in found}


async def assert_exact(server: ServerUnderTest, session_id: str) -> None:
    clips = await held(server, session_id)
    last, paged, total, counted = await review_says(server, session_id)
    assert (last, paged, total, counted) == (clips, clips, len(clips), len(clips))


async def test_a_rollback_behind_the_index_that_kept_the_count_is_read_as_the_clips_are(
    server: ServerUnderTest, clients: list[Client], redis_process: RedisProcess
) -> None:
    """Lost: a deletion and a click (the count unchanged), which the index had read."""
    raw = Redis.from_url(redis_process.url)
    try:
        session_id, _ = await started(server, clients)
        kept = [await click(server, clients, session_id, f"viewer-{n}") for n in range(3)]
        await assert_exact(server, session_id)
        lost = but_the_index(raw, server, session_id)
        await lost.take()
        await delete(server, session_id, kept[0])
        await click(server, clients, session_id, "viewer-lost")
        await assert_exact(server, session_id)  # the index reads both
        await lost.restore()
        assert await held(server, session_id) == set(kept)
        await assert_exact(server, session_id)
    finally:
        await raw.aclose()


async def test_a_log_rewritten_past_the_index_after_a_rollback_is_read_as_the_clips_are(
    server: ServerUnderTest, clients: list[Client], redis_process: RedisProcess
) -> None:
    """Lost: a deletion and a click the index had read; then other changes take the same log
    offsets and one more (same epoch: nobody subscribed noticed), the count unchanged."""
    raw = Redis.from_url(redis_process.url)
    try:
        session_id, _ = await started(server, clients)
        kept = [await click(server, clients, session_id, f"viewer-{n}") for n in range(3)]
        await assert_exact(server, session_id)
        lost = but_the_index(raw, server, session_id)
        await lost.take()
        await delete(server, session_id, kept[0])
        await click(server, clients, session_id, "viewer-lost")
        await assert_exact(server, session_id)
        epoch = (await server.services.log.position(session_id)).epoch
        await lost.restore()
        await click(server, clients, session_id, "viewer-again")
        await delete(server, session_id, kept[1])
        await click(server, clients, session_id, "viewer-after")
        assert (await server.services.log.position(session_id)).epoch == epoch
        await assert_exact(server, session_id)
    finally:
        await raw.aclose()


async def test_an_index_or_its_position_lost_while_the_clips_stayed_is_built_again(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    redis, keys = server.services.redis, server.services.keys
    session_id, _ = await started(server, clients)
    first = [await click(server, clients, session_id, f"viewer-{n}") for n in range(3)]
    await assert_exact(server, session_id)
    for n, lost in enumerate((keys.stream_review_index(session_id), keys.stream_review_meta(session_id))):
        await redis.delete(lost)
        await delete(server, session_id, first.pop())
        await click(server, clients, session_id, f"viewer-after-{n}")
        await assert_exact(server, session_id)


async def test_a_node_killed_mid_build_leaves_nothing_for_good_and_the_next_read_builds(
    server: ServerUnderTest, clients: list[Client], redis_process: RedisProcess, tmp_path: Path
) -> None:
    """A real ``serve`` process killed (-9) while it builds a big stream's index in pages."""
    redis, keys = server.services.redis, server.services.keys
    session_id, _ = await started(server, clients)
    await store_clips(
        server,
        session_id,
        [stored_clip(n, segment_index=1, offset_ms=n, note="", clipped=False) for n in range(60_000)],
    )
    port = free_port()
    (tmp_path / "doomed").mkdir()
    doomed = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", str(port)],
        cwd=ROOT,
        env=node_env(tmp_path / "doomed", redis_process.url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    reading: asyncio.Task[Any] | None = None
    builds = f"*{{{session_id}}}:review_build:*"
    try:
        await _wait_ready(f"http://127.0.0.1:{port}", doomed)
        url = f"http://127.0.0.1:{port}/api/streams/{session_id}/review"
        reading = asyncio.create_task(get(url, server.token("alice")))
        started_s = time.monotonic()
        while not [k async for k in redis.scan_iter(match=builds)]:  # its first pages are in
            assert time.monotonic() - started_s < 15 and not reading.done(), "the node never built in pages"
            await asyncio.sleep(0.005)
        doomed.send_signal(signal.SIGKILL)
        await asyncio.to_thread(doomed.wait, 10)
    finally:
        if reading is not None:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait(10)
    assert not await redis.exists(keys.stream_review_index(session_id))  # it died before installing
    left = [k async for k in redis.scan_iter(match=f"*{{{session_id}}}:*review*")]
    left += [k async for k in redis.scan_iter(match=f"*{{{session_id}}}:clips_copy:*")]
    assert left, "the kill left no build behind: nothing was tested"
    for key in left:
        assert 0 < await redis.pttl(key) <= BUILD_TTL_MS, key  # goes with the build's lifetime

    status, summary = await http(server, "GET", f"/api/streams/{session_id}/review", params={"last": "0"})
    assert status == 200, summary
    assert summary["clip_count"] == summary["segments"][0]["clip_count"] == 60_000
    for key in (keys.stream_review_index(session_id), keys.stream_review_meta(session_id)):
        assert INDEX_IDLE_MS - 60_000 < await redis.pttl(key) <= INDEX_IDLE_MS, key
    for key in left:  # the dead build's own keys: gone, or going with their lifetime
        assert await redis.pttl(key) != -1, key


async def get(url: str, token: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status
