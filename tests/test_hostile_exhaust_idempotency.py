"""What anonymous clients can make Redis keep with Idempotency-Keys, bounded per address per day.

Each caller keeps its 1000 newest keys per route, each with its answer, for a day
(tests/test_idempotency_bounds.py). Guest tokens are free to mint, so the bound multiplied by
the guests of an address. Measured before this cap on a real server: one guest sent 1,000
``/session`` bot commands with fresh keys in about a second, each keeping ~1 KB of Redis; an
address's thousand guests a day could keep about a gigabyte per route. Now the new keys the
guests of one address claim count per UTC day (``idempotency_keys_per_day_per_address``).
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
from storage.clock import Clock
from tests.helpers import RedisProcess, ServerUnderTest, to_window_start

DAY_S = 86_400
CAP = 3


@pytest_asyncio.fixture
async def capped(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    from tests.conftest import start_server

    clock = Clock()
    to_window_start(clock, DAY_S)  # every request of the test in one UTC day
    srv = await start_server(redis_process.url, tmp_path, clock=clock, idempotency_keys_per_day_per_address=CAP)
    yield srv
    await srv.stop()


async def command(
    http: aiohttp.ClientSession, srv: ServerUnderTest, token: str, key: str | None
) -> tuple[int, dict[str, str], dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    async with http.post(f"{srv.url}/voicebot/bot/command", json={"text": "/session"}, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.json()


async def answers_kept(redis: Redis) -> int:
    return len([key async for key in redis.scan_iter(match="*idem*") if await redis.type(key) == "string"])


async def test_guests_of_one_address_keep_at_most_the_days_keys(capped: ServerUnderTest, redis: Redis) -> None:
    """Two guests of one address keep CAP answers between them; the next new key is 429 with
    Retry-After to the day's end and keeps nothing, while a kept key is still replayed, the
    request without a key still runs, an account is not counted and the next day lets them in.
    Fails without the cap: the fourth key keeps its answer (200)."""
    srv = capped
    tokens = [
        srv.token(f"guest-{uuid.uuid4().hex}", perms=GUEST_PERMISSIONS, ttl_s=3 * DAY_S, guest=True) for _ in range(2)
    ]
    async with aiohttp.ClientSession() as http:
        kept = uuid.uuid4().hex
        assert (await command(http, srv, tokens[0], kept))[0] == 200
        assert (await command(http, srv, tokens[0], uuid.uuid4().hex))[0] == 200
        assert (await command(http, srv, tokens[1], uuid.uuid4().hex))[0] == 200
        before = await answers_kept(redis)

        status, headers, body = await command(http, srv, tokens[1], uuid.uuid4().hex)
        assert status == 429 and body["error"] == "rate_limited", body
        assert "a day from this address" in body["message"], body
        assert DAY_S - 600 <= int(headers["Retry-After"]) <= DAY_S, headers
        assert await answers_kept(redis) == before
        status, headers, _ = await command(http, srv, tokens[0], kept)
        assert status == 200 and headers.get("Idempotent-Replayed") == "true", headers
        assert (await command(http, srv, tokens[1], None))[0] == 200
        account = srv.token(f"acct-{uuid.uuid4().hex}", ttl_s=3 * DAY_S)
        assert (await command(http, srv, account, uuid.uuid4().hex))[0] == 200

        counters = [key async for key in redis.scan_iter(match="*rate:idempotency_day:*")]
        assert [int(await redis.get(key) or 0) for key in counters] == [CAP]
        assert 0 < await redis.ttl(counters[0]) <= 2 * DAY_S

        srv.services.clock.shift_ms += DAY_S * 1000  # the next day
        assert (await command(http, srv, tokens[1], uuid.uuid4().hex))[0] == 200
