"""What anonymous clients can make the server keep with tiny audio chunks, bounded per day.

An audio chunk is charged on the byte quota for its size only, but each costs a record in Redis
and a file on disk whatever its size. Measured before this cap on a real server: an 11-byte
"MP3" (``ID3`` and 8 random bytes: sniffed as MP3, its duration the client's) was stored, 110 of
them in one guest's session grew Redis by ~550 bytes each besides the session's log (chunks,
chunk_sha, chunk_order) and took 110 inodes and 440 KiB of disk blocks for 1.2 KB of audio; the
guests of one address, with their 500 sessions a day of 2,000 chunks each, could store a million
such chunks a day (~550 MB of Redis, ~4 GB of blocks) for 11 MB of quota. Now the chunks a user,
and a guest's address, store are counted per UTC day (``SESSIONHUB_VOICE_CHUNKS_PER_DAY``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio
from redis.asyncio import Redis

from auth.claims import GUEST_PERMISSIONS
from storage.clock import Clock
from tests.helpers import RedisProcess, ServerUnderTest, to_window_start
from tests.voice.uploads import chunk_form

DAY_S = 86_400
CAP = 3


@pytest_asyncio.fixture
async def capped(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    from tests.conftest import start_server

    clock = Clock()
    to_window_start(clock, DAY_S)  # every upload of the test in one UTC day
    srv = await start_server(redis_process.url, tmp_path, clock=clock, voice_chunks_per_day=CAP)
    yield srv
    await srv.stop()


class Recorder:
    """One identity's HTTP calls: its voice session and its chunks (all from 127.0.0.1)."""

    def __init__(self, http: aiohttp.ClientSession, srv: ServerUnderTest, token: str) -> None:
        self._http = http
        self._srv = srv
        self._headers = {"Authorization": f"Bearer {token}"}
        self.session_id = ""

    async def open(self) -> None:
        async with self._http.post(f"{self._srv.url}/voicebot/create_session", json={}, headers=self._headers) as resp:
            assert resp.status == 201, await resp.text()
            self.session_id = (await resp.json())["session_id"]

    async def upload(self, audio: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
        form = chunk_form(self.session_id, audio, filename="tiny.mp3")
        async with self._http.post(f"{self._srv.url}/voicebot/chunks", data=form, headers=self._headers) as resp:
            return resp.status, dict(resp.headers), await resp.json()


def tiny() -> bytes:
    """The smallest audio the server stores: an MP3 by its ``ID3`` head, distinct each time."""
    return b"ID3" + os.urandom(8)


def files_under(folder: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(folder))


async def test_guests_of_one_address_store_at_most_the_days_chunks(
    capped: ServerUnderTest, redis: Redis, tmp_path: Path
) -> None:
    """Two guests of one address store CAP tiny chunks between them (a duplicate is not counted);
    the next chunk of either is ``429 rate_limited`` with Retry-After to the day's end and leaves
    no record and no file; an account from that address counts for itself; the next day lets
    them in. Fails without the cap: the fourth chunk is 201."""
    srv = capped

    def guest() -> str:
        return srv.token(f"guest-{uuid.uuid4().hex}", perms=GUEST_PERMISSIONS, ttl_s=3 * DAY_S, guest=True)

    async with aiohttp.ClientSession() as http:
        first = Recorder(http, srv, guest())
        second = Recorder(http, srv, guest())
        await first.open()
        await second.open()
        again = tiny()
        assert (await first.upload(again))[0] == 201
        assert (await first.upload(again))[2]["duplicate"] is True  # a retry: not a new chunk
        assert (await first.upload(tiny()))[0] == 201
        assert (await second.upload(tiny()))[0] == 201
        files = files_under(tmp_path)

        for recorder in (second, first):
            status, headers, body = await recorder.upload(tiny())
            assert status == 429 and body["error"] == "rate_limited", body
            assert "audio chunks a day from this address" in body["message"], body
            retry_after = int(headers["Retry-After"])
            assert DAY_S - 600 <= retry_after <= DAY_S and body["retry_after_s"] == retry_after, body
        assert files_under(tmp_path) == files
        counts = [await redis.hlen(key) async for key in redis.scan_iter(match="*}:chunks")]
        assert sorted(counts) == [1, 2], counts
        day_counters = [key async for key in redis.scan_iter(match="*rate:voice_chunk_day:a:*")]
        assert [int(await redis.get(key) or 0) for key in day_counters] == [CAP]
        assert 0 < await redis.ttl(day_counters[0]) <= 2 * DAY_S

        # An account the operator issued, from the same address, pays for itself only.
        account = Recorder(http, srv, srv.token(f"acct-{uuid.uuid4().hex}", ttl_s=3 * DAY_S))
        await account.open()
        assert (await account.upload(tiny()))[0] == 201

        srv.services.clock.shift_ms += DAY_S * 1000  # the next day
        assert (await second.upload(tiny()))[0] == 201
