"""Every kind of session an anonymous client can create counts in one per-address daily cap
(an account the operator issued does not: its per-user limits hold it).

Pattern sessions were capped per client address per UTC day (SESSIONHUB_PATTERNS_CREATES_PER_DAY),
voice and stream sessions only per minute: a guest (free to mint, 1000 a day per address) kept
``creates_per_min_per_address`` voice sessions a minute, ~43,000 a day with no TTL, and stream
sessions were limited per user only. Now each creation of any kind counts on the same counter.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from auth.claims import GUEST_PERMISSIONS
from tests.helpers import RedisProcess, ServerUnderTest, to_window_start

DAY_S = 86_400


class Caller:
    """One HTTP client that says which address it comes from (the server trusts one proxy)."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self._http = http
        self._url = url

    async def post(
        self, path: str, address: str, *, token: str = "", json: Any = None, key: str = ""
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        headers = {"X-Forwarded-For": address}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if key:
            headers["Idempotency-Key"] = key
        async with self._http.post(f"{self._url}{path}", json=json, headers=headers) as resp:
            return resp.status, dict(resp.headers), await resp.json()


def guest(srv: ServerUnderTest) -> str:
    """A new guest's token, as /api/auth/guest makes one. Minted on the wall clock (a token
    issued in the future is invalid) and long enough to outlive the server's clock moved on."""
    return srv.token(f"guest-{uuid.uuid4().hex}", perms=GUEST_PERMISSIONS, ttl_s=3 * DAY_S, guest=True)


def assert_refused_for_the_day(status: int, headers: dict[str, str], body: dict[str, Any]) -> None:
    assert status == 429 and body["error"] == "rate_limited", body
    assert "a day from this address" in body["message"], body
    # The day's end (the clock was put at its start), not a minute's.
    assert DAY_S - 600 <= int(headers["Retry-After"]) <= DAY_S and body["retry_after_s"] == int(headers["Retry-After"])


async def serve(redis_process: RedisProcess, tmp_path: Path, **overrides: object) -> ServerUnderTest:
    from tests.conftest import start_server

    settings: dict[str, object] = {"trust_forwarded_for": True, "patterns_creates_per_day": 3, **overrides}
    srv = await start_server(redis_process.url, tmp_path, **settings)
    to_window_start(srv.services.clock, DAY_S)  # every create of the test in one UTC day
    return srv


async def test_voice_creates_share_the_patterns_daily_cap_per_address(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> None:
    """A pattern, a voice session and a voice session retried with its Idempotency-Key (counted
    once) fill a day's cap of 3 for an IPv6 /64: the next voice create (another guest of that
    /64), the bot's /start and a pattern are 429 with Retry-After to the day's end. Another
    address, and the next day, are let in."""
    srv = await serve(redis_process, tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            call = Caller(http, srv.url)
            first, second = guest(srv), guest(srv)
            status, _, body = await call.post("/api/sessions", "2001:db8:5:5::3", json={})
            assert status == 201, body
            status, _, body = await call.post("/voicebot/create_session", "2001:db8:5:5::4", token=first, json={})
            assert status == 201, body
            key = str(uuid.uuid4())
            made = await call.post("/voicebot/create_session", "2001:db8:5:5::5", token=first, json={}, key=key)
            again = await call.post("/voicebot/create_session", "2001:db8:5:5::6", token=first, json={}, key=key)
            assert made[0] == again[0] == 201 and again[1].get("Idempotent-Replayed") == "true", again
            assert again[2]["session_id"] == made[2]["session_id"]

            assert_refused_for_the_day(
                *await call.post("/voicebot/create_session", "2001:db8:5:5::7", token=second, json={})
            )
            assert_refused_for_the_day(
                *await call.post("/voicebot/bot/command", "2001:db8:5:5::8", token=second, json={"text": "/start"})
            )
            status, _, body = await call.post("/api/sessions", "2001:db8:5:5::9", json={})
            assert status == 429 and body["message"] == "At most 3 sessions a day; try again later.", body
            # A person with an account the operator issued, behind the same address (an office,
            # a phone carrier's NAT), is held by their own limits, not the anonymous day's cap.
            member = srv.token(f"member-{uuid.uuid4().hex}", ttl_s=3 * DAY_S)
            status, _, body = await call.post("/voicebot/create_session", "2001:db8:5:5::a", token=member, json={})
            assert status == 201, body
            made = await call.post("/api/streams", "2001:db8:5:5::b", token=member, json={"title": "Raid"})
            assert made[0] == 201, made
            # Nothing refused was stored: the guest's list holds what was made.
            listed = await http.get(f"{srv.url}/voicebot/sessions", headers={"Authorization": f"Bearer {second}"})
            assert (await listed.json())["sessions"] == []

            other = guest(srv)
            status, _, body = await call.post("/voicebot/create_session", "192.0.2.20", token=other, json={})
            assert status == 201, body
            srv.services.clock.shift_ms += DAY_S * 1000  # the next day
            fresh = guest(srv)
            status, _, body = await call.post("/voicebot/create_session", "2001:db8:5:5::10", token=fresh, json={})
            assert status == 201, body
    finally:
        await srv.stop()


async def test_stream_creates_share_the_daily_cap_per_address(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> None:
    """Stream sessions of guests of one address count in the same day's cap as voice sessions
    (and a retried stream create with its key counts once): the fourth create of the day is 429."""
    srv = await serve(redis_process, tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            call = Caller(http, srv.url)
            guests = [guest(srv) for _ in range(3)]
            status, _, body = await call.post("/voicebot/create_session", "198.51.100.7", token=guests[0], json={})
            assert status == 201, body
            stream = {"title": "speedrun"}
            key = str(uuid.uuid4())
            made = await call.post("/api/streams", "198.51.100.7", token=guests[1], json=stream, key=key)
            again = await call.post("/api/streams", "198.51.100.7", token=guests[1], json=stream, key=key)
            assert made[0] == again[0] == 201 and again[1].get("Idempotent-Replayed") == "true", again
            status, _, body = await call.post("/api/streams", "198.51.100.7", token=guests[2], json=stream)
            assert status == 201, body
            assert_refused_for_the_day(*await call.post("/api/streams", "198.51.100.7", token=guests[2], json=stream))
            listed = await http.get(f"{srv.url}/api/streams", headers={"Authorization": f"Bearer {guests[2]}"})
            assert len((await listed.json())["sessions"]) == 1  # the refused one was not stored
            status, _, body = await call.post("/api/streams", "203.0.113.9", token=guests[2], json=stream)
            assert status == 201, body  # from another address
    finally:
        await srv.stop()


async def test_stream_creates_are_limited_per_address_per_minute(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> None:
    """Per address per minute too, as voice creates are: many guests of one address were each
    allowed ``creates_per_min`` streams a minute."""
    srv = await serve(redis_process, tmp_path, creates_per_min_per_address=2, patterns_creates_per_day=100)
    try:
        async with aiohttp.ClientSession() as http:
            call = Caller(http, srv.url)
            guests = [guest(srv) for _ in range(3)]
            statuses = []
            for token in guests:
                status, headers, body = await call.post(
                    "/api/streams", "198.51.100.8", token=token, json={"title": "t"}
                )
                statuses.append(status)
            assert statuses == [201, 201, 429], statuses
            assert body["error"] == "rate_limited" and "this address; wait a minute" in body["message"], body
            assert 1 <= int(headers["Retry-After"]) <= 60
    finally:
        await srv.stop()
