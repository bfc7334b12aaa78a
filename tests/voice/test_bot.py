"""The chat-bot side of seed 002: /start, /session, /done, /login and material routing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio

from auth.claims import Permission
from handlers.admin.nodes import NODES_KEY
from handlers.payloads import BotCommand
from tests.helpers import OWNER, Client, ServerUnderTest

NOT_FOUND = "Активная сессия не найдена..."


class Bot:
    """What a chat adapter does: forward one user's messages with that user's token."""

    def __init__(self, http: aiohttp.ClientSession, server: ServerUnderTest, token: str) -> None:
        self.http, self.server, self.token = http, server, token

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.http.post(self.server.url + path, json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async def say(self, text: str, reply_to_text: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"text": text}
        if reply_to_text is not None:
            body["reply_to_text"] = reply_to_text
        status, answer = await self.post("/voicebot/bot/command", body)
        assert status == 200, answer
        return answer

    async def send(self, **material: Any) -> dict[str, Any]:
        status, answer = await self.post("/voicebot/materials", material)
        assert status == 201, answer
        return answer


@pytest_asyncio.fixture
async def bot(server: ServerUnderTest) -> AsyncIterator[Bot]:
    async with aiohttp.ClientSession() as http:
        yield Bot(http, server, server.token("alice", telegram_user_id="4242"))


async def test_session_and_done_without_an_active_session(bot: Bot) -> None:
    assert await bot.say("/session") == {"command": "/session", "reply": NOT_FOUND, "active_session": None}
    assert await bot.say("/done") == {"command": "/done", "reply": NOT_FOUND, "active_session": None}


async def test_start_always_creates_and_activates_without_closing_the_old_one(
    bot: Bot, server: ServerUnderTest
) -> None:
    first = (await bot.say("/start"))["active_session"]
    second = (await bot.say("/start@strato_voice_bot"))["active_session"]
    assert first["session_id"] != second["session_id"]
    assert await server.services.voice.active_id("alice") == second["session_id"]
    old = await server.services.voice.get(first["session_id"])
    assert old is not None and old.is_active  # not closed
    answer = await bot.say("/session")
    assert answer["active_session"]["session_id"] == second["session_id"]
    assert answer["reply"].endswith(f"/session/{second['session_id']}")


async def test_the_bots_replies_link_sessions_absolutely(bot: Bot, server: ServerUnderTest) -> None:
    """Seed 002: the bot shows canonical links (``https://<host>/session/<id>``); a chat shows a
    bare ``/session/<id>`` as text nobody can open. Without SESSIONHUB_PUBLIC_URL the host is the
    one the bot's request was addressed to, as for /login."""
    started = await bot.say("/start")
    session_id = started["active_session"]["session_id"]
    link = f"{server.url}/session/{session_id}"
    assert started["reply"] == f"Новая сессия: {link}"
    assert (await bot.say("/session"))["reply"] == f"Активная сессия: {link}"
    assert (await bot.say("/done"))["reply"] == f"Сессия закрыта: {link}"
    assert (await bot.say("/login"))["login_url"].startswith(f"{server.url}/tg_auth?token=")


async def test_session_switches_by_id_link_or_reply(bot: Bot, server: ServerUnderTest) -> None:
    a, b = await server.create_session("alice"), await server.create_session("alice")
    assert (await bot.say(f"/session {a}"))["active_session"]["session_id"] == a
    assert (await bot.say(f"/session https://voice.stratospace.fun/session/{b}"))["active_session"]["session_id"] == b
    answer = await bot.say("/session", reply_to_text=f"here: https://voice.example.org/session/{a} ok")
    assert answer["active_session"]["session_id"] == a
    assert await server.services.voice.active_id("alice") == a


async def test_session_checks_access_and_ids(bot: Bot, server: ServerUnderTest) -> None:
    others = await server.create_session("carol")
    status, body = await bot.post("/voicebot/bot/command", {"text": f"/session {others}"})
    assert (status, body["error"]) == (403, "forbidden")
    status, body = await bot.post("/voicebot/bot/command", {"text": "/session not-an-id"})
    assert (status, body["error"]) == (400, "invalid_session_id")
    assert await server.services.voice.active_id("alice") is None
    for text in ("/frobnicate", "hello", ""):
        status, body = await bot.post("/voicebot/bot/command", {"text": text})
        assert (status, body["error"]) == (400, "invalid_payload"), text


async def test_done_closes_only_the_active_session_and_clears_it(bot: Bot, server: ServerUnderTest, redis: Any) -> None:
    page_session = await server.create_session("alice")
    active = (await bot.say("/start"))["active_session"]["session_id"]
    answer = await bot.say("/done")
    assert answer["closed"]["session_id"] == active and answer["closed"]["done_count"] == 1
    assert answer["closed"]["ok"] is True  # the session_done ack, as PROTOCOL says
    assert await server.services.voice.active_id("alice") is None
    closed, untouched = await server.services.voice.get(active), await server.services.voice.get(page_session)
    assert closed is not None and not closed.is_active
    assert untouched is not None and untouched.is_active
    jobs = await redis.xrange(server.services.keys.jobs())
    assert any('"telegram_user_id":"4242"' in fields["job"] for _, fields in jobs)
    assert (await bot.say("/done"))["reply"] == NOT_FOUND


async def test_materials_go_to_the_open_active_session_or_a_new_one(
    bot: Bot, server: ServerUnderTest, clients: list[Client]
) -> None:
    first = await bot.send(kind="text", text="hello")
    assert first["created_session"] is True and first["count"] == 1
    session_id = first["session_id"]
    watcher = await server.subscriber(clients, session_id)
    second = await bot.send(kind="voice", file_id="file-1", duration_s=3.5)
    assert (second["session_id"], second["created_session"], second["count"]) == (session_id, False, 2)
    await watcher.wait_for(lambda: bool(watcher.named("material_added")))
    assert watcher.named("material_added")[0]["data"]["file_id"] == "file-1"
    stored = await server.services.voice.materials(session_id, limit=10)
    assert [m["kind"] for m in stored] == ["text", "voice"]

    await bot.say("/done")  # no open active session any more: the next material starts one
    third = await bot.send(kind="photo", file_id="p1")
    assert third["created_session"] is True and third["session_id"] != session_id
    assert await server.services.voice.active_id("alice") == third["session_id"]


async def test_a_closed_active_session_is_not_attached_to(bot: Bot, server: ServerUnderTest) -> None:
    closed = await server.create_session("alice")
    await server.services.voice.done(closed, OWNER)
    await bot.say(f"/session {closed}")  # explicitly activated, but closed
    answer = await bot.send(kind="document", file_id="d1")
    assert answer["created_session"] is True and answer["session_id"] != closed
    assert await server.services.voice.materials(closed, limit=10) == []


async def test_bad_materials_change_nothing(bot: Bot, server: ServerUnderTest, redis: Any) -> None:
    await server.app[NODES_KEY].beat()  # the heartbeat the node writes in the background, written now
    before = await redis.dbsize()
    for body in (
        {"kind": "text"},
        {"kind": "voice"},
        {"kind": "video", "file_id": "x"},
        {"kind": "text", "text": "x" * 5000},
        {"kind": "voice", "file_id": "bad id"},
        {"kind": "voice", "file_id": "f", "duration_s": -1},
    ):
        status, answer = await bot.post("/voicebot/materials", body)
        assert (status, answer["error"]) == (400, "invalid_payload"), body
    assert await redis.dbsize() == before


async def test_login_link_works_once(bot: Bot, server: ServerUnderTest) -> None:
    answer = await bot.say("/login")
    assert answer["reply"] == answer["login_url"] and "/tg_auth?token=" in answer["login_url"]
    token = answer["login_url"].split("token=", 1)[1]
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/api/auth/one_time", json={"token": token}) as resp:
            assert resp.status == 200
            body = await resp.json()
        claims = server.tokens.verify(body["token"])
        assert (claims.sub, claims.telegram_user_id, claims.guest) == ("alice", "4242", False)
        assert Permission.UPDATE in claims.perms
        async with http.post(f"{server.url}/api/auth/one_time", json={"token": token}) as resp:
            assert resp.status == 401 and (await resp.json())["error"] == "unauthorized"
        async with http.post(f"{server.url}/api/auth/one_time", json={"token": "x" * 43}) as resp:
            assert resp.status == 401
    stored = [k for k in await server.services.redis.keys("*login*")]
    assert token not in "".join(stored)  # only hashes are kept


async def _redeem(server: ServerUnderTest, http: aiohttp.ClientSession, login_url: str) -> tuple[int, Any]:
    async with http.post(f"{server.url}/api/auth/one_time", json={"token": login_url.split("token=", 1)[1]}) as resp:
        return resp.status, await resp.json()


async def test_a_login_link_signs_a_device_in_but_never_outlives_or_outranks_the_token_that_asked(
    server: ServerUnderTest,
) -> None:
    asking = server.token("bob", perms=(Permission.READ_OWN, Permission.ADMIN), ttl_s=120)
    async with aiohttp.ClientSession() as http:
        answer = await Bot(http, server, asking).say("/login")
        assert 0 < answer["expires_in_s"] <= 120  # the link itself ends with the token
        status, body = await _redeem(server, http, answer["login_url"])
        assert status == 200, body
        minted = server.tokens.verify(body["token"])
        # Issue 22: the browser becomes a lasting device of bob's, with no more than the asking
        # token's permissions (admin comes only from `sessionhub admin grant`).
        assert (minted.sub, minted.perms, minted.guest) == ("bob", (Permission.READ_OWN,), False)
        assert body["device_id"] == minted.fam != ""
        late = await Bot(http, server, asking).say("/login")
        server.services.clock.shift_ms += 121_000  # the asking token has expired since
        status, body = await _redeem(server, http, late["login_url"])
        assert status == 401 and "expired" in body["message"]


async def test_guests_get_no_login_link(server: ServerUnderTest) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/api/auth/guest") as resp:
            guest_token = (await resp.json())["token"]
        status, answer = await Bot(http, server, guest_token).post("/voicebot/bot/command", {"text": "/login"})
        assert (status, answer["error"]) == (403, "forbidden")
        assert "guest" in answer["message"]
    assert not await server.services.redis.keys("*login*")


async def test_a_session_link_is_an_argument_the_document_publishes(bot: Bot, server: ServerUnderTest) -> None:
    """PROTOCOL.md: ``/session <id or link>``. The server takes a link; so must the pattern the
    OpenAPI document publishes for ``text``, or a client validating with it refuses a link."""
    session_id = await server.create_session("alice")
    published = re.compile(BotCommand.model_json_schema()["properties"]["text"]["pattern"])
    for text in (
        f"/session {session_id}",
        f"/session https://voice.example/session/{session_id}",
        f"/session@sessionhub_bot http://127.0.0.1:8080/session/{session_id}/",
    ):
        assert published.match(text), text
        assert (await bot.say(text))["active_session"]["session_id"] == session_id
    assert not published.match("/session https://voice.example/s/" + session_id)


async def test_a_done_retried_with_its_idempotency_key_after_its_answer_was_lost_counts_once(
    bot: Bot, server: ServerUnderTest, redis: Any
) -> None:
    """A ``/done`` that closed the session and then failed (its node died before the answer was
    stored) leaves its Idempotency-Key free: the adapter's retry with the same key is that press
    (the key is its ``request_id``), not a second close counted and queued again. The failed try
    got as far as its job, so it had cleared the pointer: one set since (``/session``) stays."""
    voice = server.services.voice
    session_id = (await bot.say("/start"))["active_session"]["session_id"]
    key = "adapter-done-0001"
    headers = {"Authorization": f"Bearer {bot.token}", "Idempotency-Key": key}
    url = f"{server.url}/voicebot/bot/command"
    async with bot.http.post(url, json={"text": "/done"}, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
    first = await voice.get(session_id)
    assert first is not None and first.done_count == 1
    # What the failed try leaves: no stored answer for the key. Then the session is chosen again.
    keys = server.services.keys
    stored = keys.idempotent_answer("bot_command", "u:alice", key)
    assert await redis.delete(stored) == 1
    await redis.zrem(keys.idempotent_index("bot_command", "u:alice"), stored)
    await voice.set_active("alice", session_id)
    async with bot.http.post(url, json={"text": "/done"}, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers.get("Idempotent-Replayed") != "true"  # run again, not replayed
    again = await voice.get(session_id)
    assert again is not None and again.done_count == 1
    assert await voice.active_id("alice") == session_id
    # Another key is another press: counted.
    headers["Idempotency-Key"] = "adapter-done-0002"
    async with bot.http.post(url, json={"text": "/done"}, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
    third = await voice.get(session_id)
    assert third is not None and third.done_count == 2


async def test_commands_in_any_case(bot: Bot, server: ServerUnderTest) -> None:
    """A phone's keyboard capitalises the first letter: ``/Done`` is ``/done``, not unknown."""
    started = await bot.say("/Start Capitalised")
    session_id = started["active_session"]["session_id"]
    assert started["command"] == "/start" and started["active_session"]["session_name"] == "Capitalised"
    assert (await bot.say("/SESSION@Strato_Voice_Bot"))["active_session"]["session_id"] == session_id
    assert (await bot.say("/LogIn"))["login_url"].startswith(f"{server.url}/tg_auth?token=")
    closed = await bot.say("/Done")
    assert closed["command"] == "/done" and closed["closed"]["done_count"] == 1
    assert await server.services.voice.active_id("alice") is None
