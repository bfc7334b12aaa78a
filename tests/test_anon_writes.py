"""What an anonymous client can make the server store, bounded per client address.

Guests are made without any credential and kept ``guest_idle_s`` (30 days) after their last
visit, with what they own (tests/identity/test_guest_retention.py); a refresh with a made-up cookie stores a rate counter. Both were bounded only per
minute (or not at all): these tests hold each one to a cap that answers 429 with Retry-After.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from handlers.auth_cookie import CLIENT_HEADER, COOKIE_NAME
from storage.clock import Clock
from tests.helpers import RedisProcess, to_window_start
from tests.identity.support import Browser


async def test_guests_are_limited_per_address_per_day(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> None:
    """Past ``guests_per_day`` from one address (an IPv6 client by its /64) a guest is 429 with a
    Retry-After up to the day's end, whatever the minute's limit; another address, a guest who
    comes back with their cookie, and the next day are let in."""
    from tests.conftest import start_server

    clock = Clock()
    srv = await start_server(redis_process.url, tmp_path, clock=clock, guests_per_day=3, trust_forwarded_for=True)
    try:
        to_window_start(clock, 86_400)  # the four guests are counted in one UTC day
        async with aiohttp.ClientSession() as http:

            async def guest(address: str) -> tuple[int, str, dict[str, object]]:
                headers = {"X-Forwarded-For": address, CLIENT_HEADER: "1"}
                async with http.post(f"{srv.url}/api/auth/guest", headers=headers) as resp:
                    return resp.status, resp.headers.get("Retry-After", ""), await resp.json()

            first = Browser(http, srv.url)
            made = await first.post("/api/auth/guest", json={}, headers={"X-Forwarded-For": "2001:db8:7:7::1"})
            assert made.status == 201 and first.credential
            assert [(await guest(f"2001:db8:7:7::{i}"))[0] for i in (2, 3)] == [201, 201]
            status, retry_after, body = await guest("2001:db8:7:7::99")  # the same /64
            assert status == 429 and body["error"] == "rate_limited", body
            assert 86_000 <= int(retry_after) <= 86_400 and body["retry_after_s"] == int(retry_after)
            assert (await guest("192.0.2.10"))[0] == 201  # another address
            # The first guest's browser comes back from the same address: its cookie restores it.
            back = await first.post("/api/auth/refresh", json={}, headers={"X-Forwarded-For": "2001:db8:7:7::1"})
            assert back.status == 200 and back.body["user_id"] == made.body["user_id"]
            clock.shift_ms += 86_400_000  # the next day
            assert (await guest("2001:db8:7:7::5"))[0] == 201
    finally:
        await srv.stop()


async def test_refreshes_with_made_up_cookies_count_per_address(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> None:
    """A refresh with a cookie naming no device is counted for its address: past
    ``signins_per_min`` it is 429 with Retry-After, and one address stores one counter however
    many ids it makes up (each was a counter of its own, and none was ever refused). A real
    device's refresh from that address is still counted for the device, and goes on."""
    from tests.conftest import start_server

    srv = await start_server(redis_process.url, tmp_path, clock=Clock(), signins_per_min=3)
    try:
        to_window_start(srv.services.clock)
        async with aiohttp.ClientSession() as http:
            device = Browser(http, srv.url)
            assert (await device.guest()).status == 201
            statuses, retry_after = [], ""
            for _ in range(8):
                made_up = f"{secrets.token_hex(12)}.{secrets.token_urlsafe(32)}"
                headers = {"Cookie": f"{COOKIE_NAME}={made_up}", "Origin": srv.url}
                async with http.post(f"{srv.url}/api/auth/refresh", json={}, headers=headers) as resp:
                    statuses.append(resp.status)
                    retry_after = resp.headers.get("Retry-After", retry_after)
            assert statuses == [401] * 3 + [429] * 5, statuses
            assert 1 <= int(retry_after) <= 60
            counters = [key async for key in redis.scan_iter(match="*rate:refresh:*")]
            assert len(counters) == 1, counters
            assert (await device.refresh()).status == 200
    finally:
        await srv.stop()
