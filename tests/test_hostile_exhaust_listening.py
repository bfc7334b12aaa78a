"""What anonymous clients can make a listening history hold, bounded per client address per day.

A guest is free to mint (1000 a day per address) and its history held up to
``listening_max_sessions`` (100,000) sessions and ``listening_max_items`` (10,000) items with
their metadata, for ``guest_idle_s`` (30 days) after its last visit. Measured before the cap:
one guest uploading over one HTTP connection (its per-minute limit raised) stored ~5.7 KB of
Redis per session (each a new item, its metadata at its size limits) at ~700 a second, and
nothing counted across the guests of one address. Now the sessions the guests of an address
*add* (a start, an upload) count on one day's counter (``listening_guest_sessions_per_day``);
extensions, resumes, pauses and repeats store nothing new and are never refused by it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio
from redis.asyncio import Redis

from auth.claims import GUEST_PERMISSIONS
from tests.helpers import Client, RedisProcess, ServerUnderTest, to_window_start
from tests.listening.support import FrozenClock

DAY_S = 86_400
CAP = 3


@pytest_asyncio.fixture
async def capped(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    """A server whose guests of one address may add CAP listening sessions a day, on a clock
    put at a UTC day's start (every write of the test in one day) that moves only when told."""
    from tests.conftest import start_server

    clock = FrozenClock()
    to_window_start(clock, DAY_S)
    srv = await start_server(
        redis_process.url, tmp_path, clock=clock, listening_guest_sessions_per_day=CAP, listening_throttle_s=5
    )
    yield srv
    await srv.stop()


def guest(srv: ServerUnderTest) -> str:
    """A guest's token as /api/auth/guest mints one, on the wall clock, outliving the test's day."""
    return srv.token(f"guest-{uuid.uuid4().hex}", perms=GUEST_PERMISSIONS, ttl_s=3 * DAY_S, guest=True)


class Http:
    """The caller's listening routes over HTTP (from 127.0.0.1, the sockets' address too)."""

    def __init__(self, http: aiohttp.ClientSession, srv: ServerUnderTest, token: str) -> None:
        self._http = http
        self._srv = srv
        self._headers = {"Authorization": f"Bearer {token}"}

    async def upload(self, client_id: str, *, ago_s: int) -> tuple[int, dict[str, str], dict[str, Any]]:
        now = self._srv.services.clock.now_ms()
        body = {
            "item_id": f"item-{client_id}",
            "device_id": "phone",
            "client_id": client_id,
            "started_at": now - ago_s * 1000,
            "ended_at": now - ago_s * 1000 + 30_000,
            "item": {"title": "t" * 300, "artwork_url": "https://example.org/" + "a" * 1900},
        }
        async with self._http.post(f"{self._srv.url}/api/listening/upload", json=body, headers=self._headers) as resp:
            return resp.status, dict(resp.headers), await resp.json()

    async def count(self) -> int:
        async with self._http.get(f"{self._srv.url}/api/listening", headers=self._headers) as resp:
            assert resp.status == 200
            return int((await resp.json())["count"])


def assert_refused_for_the_day(status: int, retry_after: int, body: dict[str, Any]) -> None:
    assert status == 429 and body["error"] == "rate_limited", body
    assert "listening sessions a day from this address" in body["message"], body
    assert DAY_S - 600 <= retry_after <= DAY_S and body["retry_after_s"] == retry_after, body


async def test_guests_of_one_address_add_at_most_the_days_listening_sessions(
    capped: ServerUnderTest, redis: Redis
) -> None:
    """Two guests of one address, over HTTP and Socket.IO, add CAP sessions between them; the
    next upload (HTTP) and the next start (socket) are refused rate_limited with a Retry-After
    to the day's end and change nothing, while the open session goes on being extended, paused
    and resumed, a repeated upload is answered duplicate, an account is not counted, and the
    next day lets the guests in again. Fails without the cap: every write is let in."""
    srv = capped
    clock = srv.services.clock
    assert isinstance(clock, FrozenClock)
    first_token, second_token = guest(srv), guest(srv)
    player = Client(srv.url, first_token)
    await player.connect()
    try:
        async with aiohttp.ClientSession() as http:
            first, second = Http(http, srv, first_token), Http(http, srv, second_token)
            history = (await player.call("listening_history", {}))["session_id"]

            async def play(item: str, status: str = "playing") -> dict[str, Any]:
                payload = {"session_id": history, "item_id": item, "status": status, "device_id": "laptop"}
                ack: dict[str, Any] = await player.call("listening_report", payload)
                return ack

            assert (await first.upload("a1", ago_s=3600))[0] == 201
            started = await play("song-1")
            assert started["ok"] and started["action"] == "started", started
            assert (await second.upload("b1", ago_s=3600))[0] == 201

            # Full: a new upload of the other guest and a new start of the first are refused.
            status, headers, body = await second.upload("b2", ago_s=7200)
            assert_refused_for_the_day(status, int(headers["Retry-After"]), body)
            refused = await play("song-2")
            assert refused["ok"] is False, refused
            assert_refused_for_the_day(429, refused["retry_after_s"], refused)
            assert await first.count() == 2 and await second.count() == 1
            # Nothing changed: song-1 is still the device's open session.
            clock.shift_ms += 6_000
            extended = await play("song-1")
            assert extended["action"] == "extended", extended
            assert (await play("song-1", "paused"))["action"] == "finalized"
            assert (await play("song-1"))["action"] == "resumed"
            # A repeat stores nothing: answered as before.
            status, _, body = await second.upload("b1", ago_s=3600)
            assert status == 200 and body["duplicate"] is True, body
            # An account the operator issued, from the same address, is held by its own caps.
            account = Http(http, srv, srv.token(f"acct-{uuid.uuid4().hex}", ttl_s=3 * DAY_S))
            assert (await account.upload("c1", ago_s=3600))[0] == 201

            counters = [key async for key in redis.scan_iter(match="*rate:listening_add_day:*")]
            assert len(counters) == 1, counters
            assert int(await redis.get(counters[0]) or 0) == CAP  # the refused ones were not counted
            assert 0 < await redis.ttl(counters[0]) <= 2 * DAY_S

            clock.shift_ms += DAY_S * 1000  # the next day
            assert (await second.upload("b2", ago_s=7200))[0] == 201
            assert (await play("song-2"))["action"] == "started"
    finally:
        await player.sio.disconnect()


async def test_a_start_refused_by_a_history_limit_gives_its_count_back(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> None:
    """A guest's start refused by its history's own cap (limit_reached, as before) is not
    counted against the address's day: only sessions actually added are."""
    from tests.conftest import start_server

    clock = FrozenClock()
    to_window_start(clock, DAY_S)
    srv = await start_server(
        redis_process.url, tmp_path, clock=clock, listening_guest_sessions_per_day=CAP, listening_max_sessions=1
    )
    try:
        async with aiohttp.ClientSession() as http:
            caller = Http(http, srv, guest(srv))
            assert (await caller.upload("a1", ago_s=3600))[0] == 201
            for client_id in ("a2", "a3", "a4"):
                status, _, body = await caller.upload(client_id, ago_s=7200)
                assert status == 409 and body["error"] == "limit_reached", body
            other = Http(http, srv, guest(srv))
            assert [(await other.upload(c, ago_s=3600))[0] for c in ("b1", "b2")] == [201, 409]
            counters = [key async for key in redis.scan_iter(match="*rate:listening_add_day:*")]
            assert [int(await redis.get(key) or 0) for key in counters] == [2]
    finally:
        await srv.stop()
