"""A voice session full of materials (SESSIONHUB_MAX_MATERIALS): the cap is accepted at its value,
and one more is ``409 limit_reached`` with ``limit`` -- a lasting state, never ``rate_limited``,
which chat adapters (and the FAB) retry after a wait that cannot help."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio
from redis.asyncio import Redis

from tests.conftest import start_server
from tests.helpers import Client, RedisProcess, ServerUnderTest
from tests.voice.test_telegram import bot_settings, message, post

CAP = 2


@pytest_asyncio.fixture
async def capped(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    srv = await start_server(redis_process.url, tmp_path, **bot_settings(max_materials=CAP))
    yield srv
    await srv.stop()


async def _material(server: ServerUnderTest, text: str) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/voicebot/materials", json={"kind": "text", "text": text}, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def test_a_full_session_refuses_one_more_material_with_limit_reached(
    capped: ServerUnderTest, clients: list[Client]
) -> None:
    answers = [await _material(capped, f"note {i}") for i in range(CAP)]
    assert [(status, body["count"]) for status, body in answers] == [(201, 1), (201, 2)]
    session_id = answers[0][1]["session_id"]
    watcher = await capped.subscriber(clients, session_id)
    status, body = await _material(capped, "one too many")
    assert status == 409, body
    assert body["error"] == "limit_reached" and body["limit"] == CAP
    assert str(CAP) in body["message"]
    stored = await capped.services.voice.materials(session_id, limit=10)
    assert [m["text"] for m in stored] == ["note 0", "note 1"]
    # The refusal logged nothing: a change made after it is the next event the watcher sees.
    assert (await watcher.call("set_session_status", {"session_id": session_id, "status": "recording"}))["ok"]
    await watcher.wait_for(lambda: bool(watcher.named("session_status")))
    assert watcher.named("material_added") == []


async def test_telegram_tells_a_full_session_apart_from_a_rate_limit(capped: ServerUnderTest) -> None:
    for i in range(CAP):
        status, _ = await post(capped, {"update_id": 500 + i, "message": message(text=f"note {i}")})
        assert status == 200
    status, reply = await post(capped, {"update_id": 600, "message": message(text="one too many")})
    assert status == 200
    assert "session is full" in reply["text"] and "/start" in reply["text"]
    assert "wait a minute" not in reply["text"]
