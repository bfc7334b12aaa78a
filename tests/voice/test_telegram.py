"""The Telegram webhook with updates shaped as Telegram documents them (Bot API ``Update``)."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from server.logs import JsonFormatter
from tests.admin.test_http import admin_token
from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest

PATH = "hook-9f8e7d6c5b4a"
SECRET = "s3cr3t-token_value"
ALICE_TG = 111222333
STRANGER_TG = 999888777
_ids = itertools.count(1000)


def bot_settings(users: str = f"{ALICE_TG}:alice", **extra: Any) -> dict[str, Any]:
    """``start_server`` settings of a node with the Telegram webhook at PATH and SECRET."""
    return {
        "voice_telegram_webhook_path": PATH,
        "voice_telegram_secret_token": SECRET,
        "voice_telegram_users": users,
        **extra,
    }


@pytest_asyncio.fixture
async def bot(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    srv = await start_server(redis_process.url, tmp_path, **bot_settings(f"{ALICE_TG}:alice, 444:bob"))
    yield srv
    await srv.stop()


def message(sender: int = ALICE_TG, **fields: Any) -> dict[str, Any]:
    """A private-chat message as Telegram sends it (with fields this server does not read)."""
    return {
        "message_id": next(_ids),
        "from": {"id": sender, "is_bot": False, "first_name": "Alice", "username": "alice_tg", "language_code": "ru"},
        "chat": {"id": sender, "first_name": "Alice", "username": "alice_tg", "type": "private"},
        "date": 1732190000,
        **fields,
    }


def command(text: str, **fields: Any) -> dict[str, Any]:
    name_length = len(text.split()[0])
    return message(text=text, entities=[{"offset": 0, "length": name_length, "type": "bot_command"}], **fields)


async def post(
    server: ServerUnderTest, update: Any, *, secret: str | None = SECRET, path: str = PATH
) -> tuple[int, Any]:
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/telegram/{path}", json=update, headers=headers) as response,
    ):
        text = await response.text()
        return response.status, (await response.json(content_type=None) if text and response.status != 404 else None)


async def send(server: ServerUnderTest, msg: dict[str, Any], key: str = "message") -> tuple[int, Any]:
    return await post(server, {"update_id": next(_ids), key: msg})


async def test_start_then_materials_then_done(bot: ServerUnderTest) -> None:
    status, reply = await send(bot, command("/start Weekly"))
    assert status == 200 and reply["method"] == "sendMessage" and reply["chat_id"] == ALICE_TG
    # Absolute links (seed 002's canonical ones): from the origin Telegram addressed the webhook to.
    assert reply["text"].startswith(f"Новая сессия: {bot.url}/session/")
    session_id = await bot.services.voice.active_id("alice")
    assert session_id and reply["text"].endswith(session_id)

    voice = {
        "file_id": "AwACAgIAAxkBAAIB",
        "file_unique_id": "AgADq",
        "duration": 7,
        "mime_type": "audio/ogg",
        "file_size": 12345,
    }
    photo = [
        {"file_id": "small_id", "file_unique_id": "s", "width": 90, "height": 60, "file_size": 900},
        {"file_id": "large_id", "file_unique_id": "l", "width": 1280, "height": 853, "file_size": 99000},
    ]
    document = {"file_id": "doc_id", "file_unique_id": "d", "file_name": "notes.pdf", "mime_type": "application/pdf"}
    for msg in (
        message(text="TODO: send the notes"),
        message(voice=voice),
        message(photo=photo, caption="whiteboard"),
        message(document=document),
    ):
        status, reply = await send(bot, msg)
        assert status == 200 and reply["text"] == f"Добавлено в сессию: {bot.url}/session/{session_id}", reply
    materials = await bot.services.voice.materials(session_id, limit=10)
    assert [(m["kind"], m["file_id"], m["text"]) for m in materials] == [
        ("text", None, "TODO: send the notes"),
        ("voice", "AwACAgIAAxkBAAIB", ""),
        ("photo", "large_id", "whiteboard"),
        ("document", "doc_id", ""),
    ]
    assert materials[1]["duration_s"] == 7.0

    status, reply = await send(bot, command("/done"))
    assert reply["text"] == f"Сессия закрыта: {bot.url}/session/{session_id}"
    session = await bot.services.voice.get(session_id)
    assert session is not None and session.status == "closed" and session.telegram_user_id == str(ALICE_TG)
    assert await bot.services.voice.active_id("alice") is None
    # The job carries the telegram id of the mapped account.
    entries = await bot.services.redis.xrange(bot.services.keys.jobs())
    assert any(f'"telegram_user_id":"{ALICE_TG}"' in fields["job"] for _, fields in entries)


async def test_session_by_reply_to_a_message_with_a_link_and_login(bot: ServerUnderTest) -> None:
    first = await bot.services.voice.create(owner_id="alice", telegram_user_id="", name="old")
    await bot.services.voice.set_active(
        "alice", (await bot.services.voice.create(owner_id="alice", telegram_user_id="", name="new")).id
    )
    quoted = {
        "message_id": 5,
        "date": 1732190000,
        "chat": {"id": ALICE_TG, "type": "private"},
        "text": f"see https://x.example/session/{first.id}",
    }
    status, reply = await send(bot, command("/session", reply_to_message=quoted))
    assert status == 200
    assert reply["text"].endswith(first.id) and await bot.services.voice.active_id("alice") == first.id
    status, reply = await send(bot, command("/session@sessionhub_bot"))
    assert status == 200 and reply["text"] == f"Активная сессия: {bot.url}/session/{first.id}"
    status, reply = await send(bot, command("/login"))
    assert status == 200 and reply["text"].startswith(f"{bot.url}/tg_auth?token=")  # a link one can open


async def test_refusals_become_clear_replies(bot: ServerUnderTest) -> None:
    bobs = await bot.services.voice.create(owner_id="bob", telegram_user_id="", name="bob's")
    assert (await send(bot, command(f"/session {bobs.id}")))[1][
        "text"
    ] == "Нет доступа к этой сессии. You have no access to this session."
    assert (await send(bot, command("/session not-a-link")))[1]["text"].startswith("Это не ссылка")
    assert (await send(bot, command("/frobnicate")))[1]["text"].startswith("Неизвестная команда")
    assert (await send(bot, message(sticker={"file_id": "st", "width": 512, "height": 512, "is_animated": False})))[1][
        "text"
    ].startswith("Этот тип сообщения")
    assert (await send(bot, message(sender=STRANGER_TG, text="hello")))[1]["text"].startswith(
        "Этот Telegram-аккаунт не связан"
    )
    assert await bot.services.voice.active_id("alice") is None  # nothing was created by any of these


async def test_updates_without_a_reply(bot: ServerUnderTest) -> None:
    await send(bot, command("/start"))
    session_id = await bot.services.voice.active_id("alice")
    assert session_id
    edited = message(text="TODO: edited text", edit_date=1732190100)
    assert await send(bot, edited, key="edited_message") == (200, None)
    callback = {
        "update_id": next(_ids),
        "callback_query": {
            "id": "1",
            "from": {"id": ALICE_TG, "is_bot": False, "first_name": "A"},
            "chat_instance": "x",
            "data": "y",
        },
    }
    assert await post(bot, callback) == (200, None)
    bot_message = message(text="hi")
    bot_message["from"]["is_bot"] = True
    assert await send(bot, bot_message) == (200, None)
    no_text = message(location={"latitude": 52.5, "longitude": 13.4})
    status, reply = await send(bot, no_text)
    assert status == 200 and reply["reply_to_message_id"] == no_text["message_id"]
    assert reply["text"].startswith("Этот тип сообщения")
    assert await bot.services.voice.materials(session_id, limit=10) == []


async def test_an_update_without_a_reply_is_an_empty_typed_200(bot: ServerUnderTest) -> None:
    # Found by schemathesis (tests/test_openapi.py): the empty answer had no Content-Type at all.
    update = {"update_id": next(_ids), "edited_message": message(text="edited", edit_date=1732190100)}
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{bot.url}/telegram/{PATH}", json=update, headers=headers) as response,
    ):
        assert (response.status, response.content_type, await response.read()) == (200, "text/plain", b"")


async def test_secret_token_path_and_bad_bodies(bot: ServerUnderTest) -> None:
    update = {"update_id": 1, "message": message(text="hello")}
    assert (await post(bot, update, secret=None))[0] == 401
    assert (await post(bot, update, secret="wrong"))[0] == 401
    assert (await post(bot, update, path="guessed"))[0] == 404
    for bad in (
        [],
        {"update_id": "1"},
        {"update_id": 1, "message": {"message_id": 1, "chat": {"id": "x"}}},
        {"update_id": 1, "message": message(text="x" * 5000)},
        # A file id outside Telegram's alphabet is refused at the edge as any other field, not
        # answered with a chat message quoting the validator (and stored as that update's reply).
        {"update_id": 2, "message": message(voice={"file_id": "a b/c", "duration": 3})},
        {"update_id": 3, "message": message(photo=[{"file_id": "<x>", "width": 1, "height": 1}])},
        {"update_id": 4, "message": message(document={"file_id": ""})},
    ):
        status, body = await post(bot, bad)
        assert (status, body["error"]) == (400, "invalid_payload"), bad
    assert await bot.services.voice.active_id("alice") is None


async def test_no_webhook_without_a_configured_path(server: ServerUnderTest) -> None:
    assert (await post(server, {"update_id": 1}, path=""))[0] == 404
    assert (await post(server, {"update_id": 1}, path="anything"))[0] == 404


@pytest.mark.parametrize("spec", ["alice", "x:alice", "12:"])
def test_user_map_must_be_well_formed(spec: str) -> None:
    from storage.voice.config import parse_user_map

    with pytest.raises(ValueError):
        parse_user_map(spec)


async def test_a_malformed_mapped_user_id_fails_at_start(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="not a valid user id"):
        await start_server(redis_process.url, tmp_path, **bot_settings("1:bad user{x}"))


async def test_the_secret_path_is_in_no_log_line_and_no_metric(
    bot: ServerUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sessionhub.request")
    status, _ = await post(bot, {"update_id": next(_ids), "message": command("/start")})
    assert status == 200
    status, _ = await post(bot, {"update_id": next(_ids)}, secret="wrong")
    assert status in (401, 403)
    lines = [JsonFormatter().format(r) for r in caplog.records if r.name == "sessionhub.request"]
    assert len(lines) >= 2 and not any(PATH in line for line in lines)
    assert any(json.loads(line)["route"] == "/telegram/{webhook_path}" for line in lines)
    headers = {"Authorization": f"Bearer {admin_token(bot)}"}
    async with aiohttp.ClientSession() as http, http.get(bot.url + "/metrics", headers=headers) as response:
        scraped = await response.text()
    assert PATH not in scraped and 'route="/telegram/{webhook_path}"' in scraped
