"""Two ``/done`` sent at the same moment close the active session once and queue one job."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import pytest

from handlers.voice.actions import JOBS_PER_MIN
from handlers.voice.bot import NO_ACTIVE_SESSION
from tests.helpers import ServerUnderTest
from tests.test_faults_voice_retries import queued
from tests.voice.test_telegram import command, post, _ids

TRIALS = 5


async def bot_done(server: ServerUnderTest, key: str | None) -> dict[str, Any]:
    """``/done`` over ``POST /voicebot/bot/command`` on a connection of its own."""
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/voicebot/bot/command", json={"text": "/done"}, headers=headers) as response,
    ):
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


async def telegram_done(server: ServerUnderTest) -> str:
    """``/done`` as a Telegram update of its own (``post`` opens its own connection)."""
    status, reply = await post(server, {"update_id": next(_ids), "message": command("/done")})
    assert status == 200, reply
    return str(reply["text"])


async def active(server: ServerUnderTest) -> str:
    session_id = await server.create_session("alice")
    await server.services.voice.set_active("alice", session_id)
    return session_id


async def closed_once(server: ServerUnderTest, session_id: str) -> None:
    session = await server.services.voice.get(session_id)
    assert session is not None and (session.status, session.done_count) == ("closed", 1)
    assert len(await queued(server, session_id, "DONE_MULTIPROMPT")) == 1
    assert await server.services.voice.active_id("alice") is None


@pytest.mark.parametrize("keyed", [False, True])
async def test_two_bot_commands_at_once_close_once(bot: ServerUnderTest, keyed: bool) -> None:
    for _ in range(TRIALS):
        session_id = await active(bot)
        keys = [str(uuid.uuid4()), str(uuid.uuid4())] if keyed else [None, None]
        answers = await asyncio.gather(*(bot_done(bot, key) for key in keys))
        closing = [a for a in answers if "closed" in a]
        assert len(closing) == 1 and closing[0]["closed"]["done_count"] == 1, answers
        assert [a["reply"] for a in answers if "closed" not in a] == [NO_ACTIVE_SESSION], answers
        await closed_once(bot, session_id)


async def test_two_telegram_updates_at_once_close_once(bot: ServerUnderTest) -> None:
    for _ in range(TRIALS):
        session_id = await active(bot)
        replies = await asyncio.gather(telegram_done(bot), telegram_done(bot))
        assert sorted(replies) == sorted([f"Сессия закрыта: {bot.url}/session/{session_id}", NO_ACTIVE_SESSION])
        await closed_once(bot, session_id)


async def test_a_refused_done_leaves_the_session_active(bot: ServerUnderTest) -> None:
    """A /done refused (here: the jobs a minute used up) changes nothing, its taken pointer
    included: the session is still active, open, and the next /done after the wait closes it."""
    session_id = await active(bot)
    for _ in range(JOBS_PER_MIN):
        await bot.services.limiter.hit("jobs", "alice", limit=JOBS_PER_MIN, window_s=60)
    headers = {"Authorization": f"Bearer {bot.token('alice')}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{bot.url}/voicebot/bot/command", json={"text": "/done"}, headers=headers) as response,
    ):
        assert response.status == 429, await response.text()
    assert await bot.services.voice.active_id("alice") == session_id
    session = await bot.services.voice.get(session_id)
    assert session is not None and session.is_active and session.done_count == 0
