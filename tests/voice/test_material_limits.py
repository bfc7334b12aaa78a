"""Chat-bot materials are rate-limited per user (SESSIONHUB_VOICE_MATERIALS_PER_MIN) and their
bytes count against the daily upload quota, as audio does: refused materials store nothing, and
a retried material (same Idempotency-Key) is answered as first, neither refused nor counted again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio
from redis.asyncio import Redis

from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest, to_window_start

PER_MIN = 3
QUOTA_BYTES = 1024
TEXT = "x" * 400  # a stored record of about 600 bytes: one fits the quota, two do not


@pytest_asyncio.fixture
async def limited(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    srv = await start_server(redis_process.url, tmp_path, voice_materials_per_min=PER_MIN)
    yield srv
    await srv.stop()


@pytest_asyncio.fixture
async def small_quota(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    srv = await start_server(redis_process.url, tmp_path, voice_upload_quota_bytes=QUOTA_BYTES)
    yield srv
    await srv.stop()


async def _material(
    server: ServerUnderTest, text: str, *, user: str = "alice", key: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {server.token(user)}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/voicebot/materials", json={"kind": "text", "text": text}, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def _stored(server: ServerUnderTest, session_id: str) -> list[str]:
    return [m["text"] for m in await server.services.voice.materials(session_id, limit=100)]


async def test_materials_past_the_per_minute_limit_are_rate_limited_and_not_stored(limited: ServerUnderTest) -> None:
    to_window_start(limited.services.clock)
    answers = [await _material(limited, f"note {i}", key=f"material-key-{i}") for i in range(PER_MIN)]
    assert [status for status, _ in answers] == [201] * PER_MIN
    session_id = answers[0][1]["session_id"]
    status, body = await _material(limited, "one too many")
    assert status == 429, body
    assert body["error"] == "rate_limited" and 0 < body["retry_after_s"] <= 60  # the minute's rest
    assert await _stored(limited, session_id) == [f"note {i}" for i in range(PER_MIN)]
    # A retry of a stored material is answered as the first time, not refused.
    status, again = await _material(limited, "note 0", key="material-key-0")
    assert (status, again["material_id"]) == (201, answers[0][1]["material_id"])
    assert await _stored(limited, session_id) == [f"note {i}" for i in range(PER_MIN)]
    # Another user is not limited by alice.
    assert (await _material(limited, "bob's", user="bob"))[0] == 201


async def test_material_bytes_count_against_the_daily_quota(small_quota: ServerUnderTest) -> None:
    server = small_quota
    status, first = await _material(server, TEXT, key="material-key-q1")
    assert status == 201, first
    counter = server.services.keys.upload_bytes("u:alice")
    charged = int(await server.services.redis.get(counter) or 0)
    assert 400 < charged < QUOTA_BYTES
    status, body = await _material(server, TEXT)
    assert status == 403, body
    assert body["error"] == "quota_exceeded" and body["quota_bytes"] == QUOTA_BYTES
    assert await _stored(server, first["session_id"]) == [TEXT]
    # The retry of the stored one is replayed: neither refused nor charged twice.
    status, again = await _material(server, TEXT, key="material-key-q1")
    assert (status, again["material_id"]) == (201, first["material_id"])
    assert int(await server.services.redis.get(counter) or 0) == charged
    assert await _stored(server, first["session_id"]) == [TEXT]


async def test_a_refused_material_creates_no_session(small_quota: ServerUnderTest) -> None:
    server = small_quota
    await server.services.redis.set(server.services.keys.upload_bytes("u:alice"), QUOTA_BYTES)
    status, body = await _material(server, "short")
    assert status == 403 and body["error"] == "quota_exceeded"
    assert await server.services.voice.active_id("alice") is None


async def test_concurrent_materials_never_store_more_than_the_quota(small_quota: ServerUnderTest) -> None:
    """Four materials at once, one of which fits: a check before storing and a charge after let
    each pass the check while none was charged; the reservation lets one through."""
    server = small_quota
    session_id = await server.create_session("alice")
    await server.services.voice.set_active("alice", session_id)
    answers = await asyncio.gather(*(_material(server, f"{n}{TEXT}") for n in range(4)))
    assert sorted(status for status, _ in answers) == [201, 403, 403, 403], answers
    assert {body["error"] for status, body in answers if status == 403} == {"quota_exceeded"}
    assert len(await _stored(server, session_id)) == 1
    counted = int(await server.services.redis.get(server.services.keys.upload_bytes("u:alice")) or 0)
    assert 0 < counted <= QUOTA_BYTES  # the refused ones gave their reservations back
