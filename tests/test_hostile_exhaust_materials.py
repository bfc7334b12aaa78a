"""What anonymous clients can make Redis hold with chat-bot materials, bounded per day.

A text material (``POST /voicebot/materials``, any token with ``update``: guests have it) is kept
in Redis, in its session's materials list, for as long as its guest lives. Its bytes counted only
in the audio upload quota (``SESSIONHUB_VOICE_UPLOAD_QUOTA_BYTES``, 1 GiB a day per user and per
guest address), a budget made for the disk: measured before this cap on a real server, a
4096-character material grew Redis's ``used_memory`` by 10.7 KB (ASCII) to 28.7 KB (3-byte
characters; the list and the session's log), and the guests of one address (1000 a day, 60
materials a minute each) could put about a gibibyte a day into Redis, kept 30 days past their
last visit. Now material bytes also count in a quota of their own
(``SESSIONHUB_VOICE_MATERIAL_QUOTA_BYTES``, 16 MiB), per user and per guest address.
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
from tests.helpers import RedisProcess, ServerUnderTest

QUOTA = 20_000  # four records of a 4,000-character text fit (~4,200 bytes each), a fifth does not
TEXT = "m" * 4000


@pytest_asyncio.fixture
async def capped(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    from tests.conftest import start_server

    srv = await start_server(
        redis_process.url, tmp_path, voice_material_quota_bytes=QUOTA, voice_materials_per_min=1000
    )
    yield srv
    await srv.stop()


async def attach(http: aiohttp.ClientSession, srv: ServerUnderTest, token: str) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    body = {"kind": "text", "text": TEXT}
    async with http.post(f"{srv.url}/voicebot/materials", json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def stored(redis: Redis) -> int:
    """Materials held in Redis, over every session."""
    return sum([await redis.llen(key) async for key in redis.scan_iter(match="*:materials")])


async def test_guests_of_one_address_store_at_most_the_days_material_bytes(
    capped: ServerUnderTest, redis: Redis
) -> None:
    """Two guests of one address share the day's material bytes: the fifth material is
    ``403 quota_exceeded`` with the materials' quota (not the audio's) and nothing is stored,
    while the audio quota is far from used; an account from that address has its own. Fails
    without the materials' quota: the fifth is stored (201)."""
    srv = capped
    first = srv.token(f"guest-{uuid.uuid4().hex}", perms=GUEST_PERMISSIONS, guest=True)
    second = srv.token(f"guest-{uuid.uuid4().hex}", perms=GUEST_PERMISSIONS, guest=True)
    async with aiohttp.ClientSession() as http:
        assert [(await attach(http, srv, first))[0] for _ in range(3)] == [201] * 3
        assert (await attach(http, srv, second))[0] == 201
        status, body = await attach(http, srv, second)
        assert status == 403 and body["error"] == "quota_exceeded", body
        assert body["quota_bytes"] == QUOTA and "chat-bot materials" in body["message"], body
        assert await stored(redis) == 4
        # The refusal gave back what it had reserved on the audio quota: it holds the four.
        audio = [int(await redis.get(key) or 0) async for key in redis.scan_iter(match="*{q:a:*}:upload_bytes")]
        counted = [int(await redis.get(key) or 0) async for key in redis.scan_iter(match="*{q:a:*}:material_bytes")]
        assert audio == counted and 4 * len(TEXT) < counted[0] <= QUOTA, (audio, counted)
        async for key in redis.scan_iter(match="*:material_bytes"):
            assert 0 < await redis.ttl(key) <= 86_400
        # An account the operator issued pays for itself only.
        account = srv.token(f"acct-{uuid.uuid4().hex}")
        assert (await attach(http, srv, account))[0] == 201
        assert await stored(redis) == 5
