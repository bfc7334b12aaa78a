"""Materials arriving together with no open active session all land in one new session."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.helpers import ServerUnderTest
from tests.voice.test_telegram import _ids, message, post

TRIALS = 3
BATCH = 5


async def forwarded(server: ServerUnderTest, file_id: str) -> str:
    """One forwarded voice note, an update on a connection of its own; the bot's reply."""
    voice = {"file_id": file_id, "file_unique_id": "u", "duration": 3}
    status, reply = await post(server, {"update_id": next(_ids), "message": message(voice=voice)})
    assert status == 200, reply
    return str(reply["text"])


async def api_material(server: ServerUnderTest, text: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/voicebot/materials", json={"kind": "text", "text": text}, headers=headers) as response,
    ):
        assert response.status == 201, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


async def one_session_holds(server: ServerUnderTest, session_ids: set[str], count: int) -> str:
    assert len(session_ids) == 1, session_ids
    (session_id,) = session_ids
    assert len(await server.services.voice.materials(session_id, limit=50)) == count
    assert await server.services.voice.active_id("alice") == session_id
    return session_id


async def test_a_forwarded_batch_opens_one_session(bot: ServerUnderTest) -> None:
    made: set[str] = set()
    for trial in range(TRIALS):
        await bot.services.voice.set_active("alice", await bot.create_session("alice"))
        await post(bot, {"update_id": next(_ids), "message": message(text="/done")})  # none active
        replies = await asyncio.gather(*(forwarded(bot, f"fwd{trial}_{i}") for i in range(BATCH)))
        assert sum(r.startswith("Новая сессия") for r in replies) == 1, replies
        made.add(await one_session_holds(bot, {r.rsplit("/", 1)[-1] for r in replies}, BATCH))
    assert len(made) == TRIALS


async def test_materials_posted_together_open_one_session(bot: ServerUnderTest) -> None:
    for _ in range(TRIALS):
        await bot.services.voice.set_active("alice", await bot.create_session("alice"))
        await post(bot, {"update_id": next(_ids), "message": message(text="/done")})
        answers = await asyncio.gather(*(api_material(bot, f"note {i}") for i in range(BATCH)))
        assert [a["created_session"] for a in answers].count(True) == 1, answers
        await one_session_holds(bot, {a["session_id"] for a in answers}, BATCH)
