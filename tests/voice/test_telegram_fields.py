"""Valid Telegram updates past this server's own bounds are taken, not refused: a refused update
is redelivered until Telegram gives up, and the material is lost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest
from tests.voice.test_telegram import ALICE_TG, bot_settings, command, message, send

PHOTO = [{"file_id": "photo_id", "file_unique_id": "p", "width": 90, "height": 60}]


@pytest_asyncio.fixture
async def bot(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    srv = await start_server(redis_process.url, tmp_path, **bot_settings(f"{ALICE_TG}:alice"))
    yield srv
    await srv.stop()


@pytest.mark.parametrize("length", [1025, 2048, 4096, 5000])
async def test_a_long_caption_is_taken_and_kept_to_what_a_material_holds(bot: ServerUnderTest, length: int) -> None:
    caption = "TODO: " + "c" * (length - 6)  # Telegram Premium's captions pass 1024 characters
    status, reply = await send(bot, message(photo=PHOTO, caption=caption))
    assert status == 200 and reply["text"].startswith("Новая сессия"), reply
    session_id = await bot.services.voice.active_id("alice")
    assert session_id
    (material,) = await bot.services.voice.materials(session_id, limit=5)
    assert (material["kind"], material["text"]) == ("photo", caption[:4096])


@pytest.mark.parametrize("duration", [86401, 10**9, -1])
async def test_an_out_of_range_duration_is_ignored(bot: ServerUnderTest, duration: int) -> None:
    audio = {"file_id": "audio_id", "file_unique_id": "a", "duration": duration, "mime_type": "audio/mpeg"}
    status, reply = await send(bot, message(audio=audio))
    assert status == 200 and reply["text"].startswith("Новая сессия"), reply
    session_id = await bot.services.voice.active_id("alice")
    assert session_id
    (material,) = await bot.services.voice.materials(session_id, limit=5)
    assert (material["kind"], material["file_id"], material["duration_s"]) == ("voice", "audio_id", 0.0)


async def test_a_long_quoted_caption_is_searched_for_a_link(bot: ServerUnderTest) -> None:
    session = await bot.services.voice.create(owner_id="alice", telegram_user_id="", name="quoted")
    quoted = {
        "message_id": 5,
        "date": 1732190000,
        "chat": {"id": ALICE_TG, "type": "private"},
        "caption": f"see {bot.url}/session/{session.id} " + "x" * 3000,
    }
    status, reply = await send(bot, command("/session", reply_to_message=quoted))
    assert status == 200 and reply["text"].endswith(session.id), reply
    assert await bot.services.voice.active_id("alice") == session.id
