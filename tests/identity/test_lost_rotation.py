"""A Redis that loses its last second must not sign a device out.

Every refresh rotates the device's credential. A Redis that crashes and comes back from an
append-only file a second old (``appendfsync everysec``), or a failover to a replica that had
not received the rotation, has the credential from before it while the browser holds the one
after it: unknown there, the device was refused for good and its guest identity, with all it
owned, lost. The cookie carries the secret it replaced too, and a credential unknown to Redis
whose previous secret is still the current one there is the rotation Redis lost.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest_asyncio
from redis import Redis as SyncRedis

from tests.helpers import RedisProcess, ServerUnderTest
from tests.identity.support import Browser


@pytest_asyncio.fixture
async def aof_redis(tmp_path: Path) -> AsyncIterator[RedisProcess]:
    own = RedisProcess(tmp_path / "redis", appendonly=True)
    own.start()
    yield own
    own.stop()


def crash_back_to(redis: RedisProcess, saved: Path) -> None:
    """Kill the redis-server (no shutdown: nothing more is written) and start it on the same
    port from the append-only files saved earlier: what it acknowledged since is lost."""
    assert redis.process is not None
    redis.process.kill()
    redis.process.wait(10)
    redis.process = None
    shutil.rmtree(redis.dir / "appendonlydir")
    shutil.copytree(saved, redis.dir / "appendonlydir")
    redis.start()


def save_aof(redis: RedisProcess, to: Path) -> Path:
    """The append-only files as they are now, every write so far on disk."""
    client = SyncRedis(port=redis.port)
    try:
        client.config_set("appendfsync", "always")  # what was acknowledged is on disk now
        client.set("sh:test:fsync-barrier", "1")
    finally:
        client.close()
    shutil.copytree(redis.dir / "appendonlydir", to)
    return to


async def ready_again(http: aiohttp.ClientSession, url: str) -> None:
    """Until the server's Redis links are back (its /readyz says so)."""
    for _ in range(500):  # bounded: 10 s at the least
        async with http.get(f"{url}/readyz") as resp:
            if resp.status == 200:
                return
        await asyncio.sleep(0.02)
    raise AssertionError("the server never found Redis again")


async def test_a_rotation_redis_lost_is_taken_as_made(aof_redis: RedisProcess, tmp_path: Path) -> None:
    from tests.conftest import start_server

    server: ServerUnderTest = await start_server(aof_redis.url, tmp_path / "node")
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            page = Browser(http, server.url)
            user_id = (await page.guest()).body["user_id"]
            saved = save_aof(aof_redis, tmp_path / "aof-before")
            rotated = await page.refresh()  # Redis acknowledges this rotation, then loses it
            assert rotated.status == 200 and rotated.cookie
            crash_back_to(aof_redis, saved)
            await ready_again(http, server.url)

            after = await page.refresh()
            assert after.status == 200, after.body
            assert after.body["user_id"] == user_id and after.cookie
            again = await page.refresh()  # and the device goes on rotating as before
            assert again.status == 200 and again.body["user_id"] == user_id
    finally:
        await server.stop()


async def test_an_old_credential_is_still_a_reuse(aof_redis: RedisProcess, tmp_path: Path) -> None:
    """The previous secret a cookie carries opens nothing by itself: a copied cookie of the time
    before a rotation, presented after it, still revokes the device."""
    from tests.conftest import start_server

    server: ServerUnderTest = await start_server(aof_redis.url, tmp_path / "node")
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            page = Browser(http, server.url)
            await page.guest()
            await page.refresh()
            copied = page.credential
            await page.refresh()
            await page.refresh()
            thief = Browser(http, server.url, credential=copied)
            refused = await thief.refresh()
            assert refused.status == 401 and refused.body.get("reason") == "reused", refused.body
            assert (await page.refresh()).status == 401  # the family is revoked
    finally:
        await server.stop()
