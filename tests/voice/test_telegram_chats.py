"""The Telegram bot acts in private chats only: a group sees no sign-in link and takes no material."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from handlers.voice.telegram import PRIVATE_ONLY
from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest
from tests.voice.test_telegram import ALICE_TG, STRANGER_TG, bot_settings, command, message, send

GROUP_ID = -1001234567890


@pytest_asyncio.fixture
async def bot(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    settings = bot_settings(f"{ALICE_TG}:alice", voice_telegram_bot_username="strato_voice_bot")
    srv = await start_server(redis_process.url, tmp_path, **settings)
    yield srv
    await srv.stop()


def in_chat(msg: dict[str, Any], kind: str) -> dict[str, Any]:
    """``msg`` as posted in a chat of ``kind`` (group, supergroup, channel)."""
    return {**msg, "chat": {"id": GROUP_ID, "type": kind, "title": "Team"}}


async def login_links(server: ServerUnderTest) -> list[str]:
    return [key async for key in server.services.redis.scan_iter(server.services.keys.login_token("*"))]


@pytest.mark.parametrize("kind", ["group", "supergroup", "channel"])
@pytest.mark.parametrize("text", ["/login", "/login@strato_voice_bot", "/start Team", "/done", "/session"])
async def test_a_command_in_a_group_gets_only_a_note_to_write_privately(
    bot: ServerUnderTest, kind: str, text: str
) -> None:
    status, reply = await send(bot, in_chat(command(text), kind))
    assert status == 200 and reply["text"] == PRIVATE_ONLY and reply["chat_id"] == GROUP_ID
    assert "tg_auth" not in reply["text"]
    assert await login_links(bot) == []  # no link made, not even one kept away from the group
    assert await bot.services.voice.active_id("alice") is None
    assert await bot.services.voice.list_for_user("alice", limit=5) == []


async def test_a_command_in_a_group_changes_nothing_for_an_active_session(bot: ServerUnderTest) -> None:
    status, reply = await send(bot, command("/start Mine"))
    session_id = await bot.services.voice.active_id("alice")
    assert status == 200 and session_id
    status, reply = await send(bot, in_chat(command("/done"), "supergroup"))
    assert reply["text"] == PRIVATE_ONLY
    session = await bot.services.voice.get(session_id)
    assert session is not None and session.is_active and session.done_count == 0


@pytest.mark.parametrize(
    "fields",
    [
        {"text": "hello team"},
        {"voice": {"file_id": "AwACAgIAAxkB", "file_unique_id": "u", "duration": 3}},
        {"photo": [{"file_id": "p1", "file_unique_id": "u", "width": 1, "height": 1}], "caption": "TODO: x"},
        {"sticker": {"file_id": "st", "width": 512, "height": 512, "is_animated": False}},
        {"new_chat_members": [{"id": 5, "is_bot": False, "first_name": "New"}]},
        {"new_chat_title": "Renamed"},
        {"pinned_message": {"message_id": 3, "date": 1732190000, "chat": {"id": GROUP_ID, "type": "group"}}},
    ],
)
async def test_other_group_messages_are_ignored(bot: ServerUnderTest, fields: dict[str, Any]) -> None:
    for sender in (ALICE_TG, STRANGER_TG):  # the unlinked get no "not linked" reply in a group either
        assert await send(bot, in_chat(message(sender, **fields), "supergroup")) == (200, None)
    assert await bot.services.voice.list_for_user("alice", limit=5) == []


async def test_a_service_message_in_a_private_chat_is_ignored(bot: ServerUnderTest) -> None:
    pinned = {"message_id": 3, "date": 1732190000, "chat": {"id": ALICE_TG, "type": "private"}, "text": "x"}
    assert await send(bot, message(pinned_message=pinned)) == (200, None)
    assert await bot.services.voice.list_for_user("alice", limit=5) == []


async def test_a_message_without_a_chat_type_is_refused(bot: ServerUnderTest) -> None:
    msg = {**command("/login"), "chat": {"id": ALICE_TG}}
    status, body = await send(bot, msg)
    assert (status, body["error"]) == (400, "invalid_payload")
    assert await login_links(bot) == []


async def test_a_capitalised_command_in_a_private_chat_runs(bot: ServerUnderTest) -> None:
    status, reply = await send(bot, command("/Start Mine"))
    assert status == 200 and reply["text"].startswith("Новая сессия"), reply
    status, reply = await send(bot, command("/Done@Strato_Voice_Bot"))
    assert status == 200 and reply["text"].startswith("Сессия закрыта"), reply
