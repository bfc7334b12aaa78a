"""A rate-limited Telegram update is refused 429 with Retry-After and not remembered: Telegram
redelivers it later, and that delivery is handled (a refusal stored as the update's answer was
replayed to every redelivery, and the message was lost)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest
from tests.voice.test_telegram import ALICE_TG, PATH, SECRET, _ids, bot_settings, command, message

VOICE = {"file_id": "AwACAgIAAxkB", "file_unique_id": "u", "duration": 3}


@pytest_asyncio.fixture
async def bot(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    srv = await start_server(redis_process.url, tmp_path, **bot_settings(f"{ALICE_TG}:alice"))
    yield srv
    await srv.stop()


async def deliver(server: ServerUnderTest, update: dict[str, Any]) -> tuple[int, str | None, Any]:
    """One delivery: the status, its Retry-After and the body."""
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/telegram/{PATH}", json=update, headers=headers) as response,
    ):
        return response.status, response.headers.get("Retry-After"), await response.json(content_type=None)


@pytest.mark.parametrize(
    ("bucket", "subject", "msg"),
    [
        ("telegram", str(ALICE_TG), lambda: message(voice=VOICE)),  # the webhook's 60 a minute
        ("material", "alice", lambda: message(voice=VOICE)),  # SESSIONHUB_VOICE_MATERIALS_PER_MIN
        ("bot_command", "alice", lambda: command("/start Later")),  # SESSIONHUB_VOICE_BOT_COMMANDS_PER_MIN
    ],
)
async def test_a_rate_limited_update_is_handled_when_redelivered(
    bot: ServerUnderTest, bucket: str, subject: str, msg: Any
) -> None:
    for _ in range(60):
        await bot.services.limiter.hit(bucket, subject, limit=60, window_s=60)
    update = {"update_id": next(_ids), "message": msg()}
    for _ in range(2):  # refused again while the minute lasts, not answered from a stored refusal
        status, retry_after, body = await deliver(bot, update)
        assert (status, body["error"]) == (429, "rate_limited"), body
        assert retry_after is not None and 1 <= int(retry_after) <= 60
    assert await bot.services.voice.list_for_user("alice", limit=5) == []  # nothing happened

    bot.services.clock.shift_ms += 60_000  # the next minute: Telegram's redelivery
    status, _, reply = await deliver(bot, update)
    assert status == 200 and reply["text"].startswith("Новая сессия"), reply
    (session,) = await bot.services.voice.list_for_user("alice", limit=5)
    count = len(await bot.services.voice.materials(session.id, limit=5))
    assert count == (1 if "voice" in update["message"] else 0)
    assert await deliver(bot, update) == (200, None, reply)  # handled once: its reply again
