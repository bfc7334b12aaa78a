"""Audit "telegram", findings 5 and 6: a closed session chosen with ``/session`` is said closed, and
a note that starts with "/" is a note, not an unknown command."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.voice.bot import ACTIVE_IS_CLOSED
from handlers.voice.telegram import UNKNOWN_COMMAND
from tests.helpers import ServerUnderTest
from tests.voice.test_telegram import command, message, send


async def _reply(server: ServerUnderTest, msg: dict[str, Any]) -> str:
    status, reply = await send(server, msg)
    assert status == 200, reply
    return str(reply["text"])


async def test_choosing_a_closed_session_says_it_is_closed_and_where_notes_go(bot: ServerUnderTest) -> None:
    await _reply(bot, command("/start"))
    closed_id = await bot.services.voice.active_id("alice")
    assert closed_id
    await _reply(bot, command("/done"))

    text = await _reply(bot, command(f"/session {closed_id}"))
    assert text == f"Активная сессия: {bot.url}/session/{closed_id}\n{ACTIVE_IS_CLOSED}"
    # Seed 002: it is the active session all the same, and /session says so again, with the state.
    assert await bot.services.voice.active_id("alice") == closed_id
    assert ACTIVE_IS_CLOSED in await _reply(bot, command("/session"))
    # As said: the next note starts a new session, and the closed one is left as it was.
    text = await _reply(bot, message(text="a note"))
    assert text.startswith("Новая сессия: ") and closed_id not in text
    assert await bot.services.voice.materials(closed_id, limit=10) == []


async def test_choosing_an_open_session_says_nothing_of_a_close(bot: ServerUnderTest) -> None:
    await _reply(bot, command("/start"))
    open_id = await bot.services.voice.active_id("alice")
    text = await _reply(bot, command(f"/session {open_id}"))
    assert text == f"Активная сессия: {bot.url}/session/{open_id}"


NOTES = ["/etc/hosts надо поправить на сервере", "/ 2 = половина, записать", "/done.", "/done/now", "/" + "a" * 33]


@pytest.mark.parametrize("text", NOTES)
async def test_a_note_starting_with_a_slash_is_a_text_material(bot: ServerUnderTest, text: str) -> None:
    # As Telegram sends them: no bot_command entity (it marks none in these).
    reply = await _reply(bot, message(text=text))
    assert reply.startswith("Новая сессия: "), reply
    session_id = await bot.services.voice.active_id("alice")
    assert session_id
    [stored] = await bot.services.voice.materials(session_id, limit=10)
    assert (stored["kind"], stored["text"]) == ("text", text)


async def test_telegrams_entities_decide_what_is_a_command(bot: ServerUnderTest) -> None:
    # A url entity at 0, no bot_command: a note, whatever its shape.
    url = message(text="/start looks like a command", entities=[{"type": "url", "offset": 7, "length": 5}])
    assert (await _reply(bot, url)).startswith("Новая сессия: ")
    session_id = await bot.services.voice.active_id("alice")
    assert session_id
    # A bot_command entity further on is no command either: the text does not start with it.
    later = message(text="see /done later", entities=[{"type": "bot_command", "offset": 4, "length": 5}])
    assert (await _reply(bot, later)).startswith("Добавлено в сессию: ")
    stored = await bot.services.voice.materials(session_id, limit=10)
    assert [m["text"] for m in stored] == ["/start looks like a command", "see /done later"]
    # Marked at 0: a command, known or not.
    assert (await _reply(bot, command("/nosuch"))) == UNKNOWN_COMMAND
    assert (await _reply(bot, message(text="/done"))).startswith("Сессия закрыта: ")  # no entities: the shape


async def test_a_slash_note_in_a_group_is_ignored_as_any_note(bot: ServerUnderTest) -> None:
    group = {"id": -100, "type": "group", "title": "team"}
    status, reply = await send(bot, {**message(text="/etc/hosts надо поправить"), "chat": group})
    assert status == 200 and reply is None
    status, reply = await send(bot, {**command("/done"), "chat": group})
    assert status == 200 and reply["text"].startswith("Напишите мне в личные сообщения")


async def test_a_message_of_invisible_characters_adds_nothing(bot: ServerUnderTest) -> None:
    """Zero-width spaces alone were stored as a text material, an empty row (audit "verify50")."""
    from handlers.voice.telegram import UNSUPPORTED

    await _reply(bot, command("/start"))
    session_id = await bot.services.voice.active_id("alice")
    assert session_id
    assert await _reply(bot, message(text="\u200b\u200b\u200b")) == UNSUPPORTED
    assert await bot.services.voice.materials(session_id, limit=10) == []
