"""A caption is text the person wrote: Done takes tasks from the captions of photos, voice notes
and documents as it does from text messages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from redis.asyncio import Redis

from jobs.voice_digest import texts_of
from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest
from tests.voice.test_processing import run_jobs
from tests.voice.test_telegram import ALICE_TG, bot_settings, command, message, send


@pytest_asyncio.fixture
async def bot(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    srv = await start_server(redis_process.url, tmp_path, **bot_settings(f"{ALICE_TG}:alice"))
    yield srv
    await srv.stop()


async def test_captions_of_telegram_materials_give_tasks(bot: ServerUnderTest) -> None:
    await send(bot, command("/start tasks"))
    session_id = await bot.services.voice.active_id("alice")
    assert session_id
    photo = [{"file_id": "ph", "file_unique_id": "u", "width": 1, "height": 1}]
    for msg in (
        message(text="TODO: a text"),
        message(photo=photo, caption="TODO: распечатать фото"),
        message(voice={"file_id": "vc", "file_unique_id": "u", "duration": 3}, caption="Задача: переслушать"),
        message(document={"file_id": "dc", "file_unique_id": "u"}, caption="[ ] подписать договор"),
        message(photo=photo),  # no caption: nothing to read
    ):
        status, reply = await send(bot, msg)
        assert status == 200 and reply["text"].startswith("Добавлено"), reply
    await send(bot, command("/done"))
    await run_jobs(bot)
    session = await bot.services.voice.get(session_id)
    assert session is not None and session.tasks is not None
    assert sorted((t["rule"], t["text"], t["source"]) for t in session.tasks) == [
        ("checkbox", "подписать договор", "material"),
        ("marker", "переслушать", "material"),
        ("todo", "a text", "material"),
        ("todo", "распечатать фото", "material"),
    ]


def test_texts_of_reads_captions_in_arrival_order() -> None:
    materials = [
        {"material_id": "m1", "kind": "photo", "file_id": "p", "text": "TODO: one"},
        {"material_id": "m2", "kind": "voice", "file_id": "v", "text": ""},
        {"material_id": "m3", "kind": "text", "text": "two"},
    ]
    assert list(texts_of(materials, []).items()) == [("m1", ("material", "TODO: one")), ("m3", ("material", "two"))]
