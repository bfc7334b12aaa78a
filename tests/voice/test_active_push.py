"""Every connection of a user that follows their active voice session (``follow_active_session``)
hears it change at once (seed 002: every client sees it live), from the bot, the REST routes or a
Done; nobody else's; and a connection that was away learns the current one when it follows again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio

from tests.conftest import start_server
from tests.helpers import Client, RedisProcess, ServerUnderTest

ANSWER_S = 10.0  # a bound on waiting for a push, not an expected duration


class Rest:
    """The user's other device (or their chat bot): plain HTTP with the user's token."""

    def __init__(self, http: aiohttp.ClientSession, server: ServerUnderTest, user: str) -> None:
        self.http, self.url, self.token = http, server.url, server.token(user)

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.http.post(self.url + path, json=body, headers=headers) as resp:
            assert resp.status in (200, 201), await resp.text()
            return await resp.json()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def pushes(client: Client) -> list[dict[str, Any]]:
    """What the client was told of the active session: its follow's answer, then each push."""
    return client.named("follow_ack") + client.named("active_session")


async def connected(clients: list[Client], server: ServerUnderTest, user: str) -> Client:
    """A connection of ``user`` that follows the active session (its answer kept as the first)."""
    client = Client(server.url, server.token(user))
    clients.append(client)
    await client.connect()
    ack = await client.call("follow_active_session", {})
    assert ack.pop("ok") is True, ack
    assert isinstance(ack.pop("name"), str), ack  # the user's name (tests/identity follow it)
    client.events.insert(0, ("follow_ack", ack))
    return client


async def hears(client: Client, session_id: str | None, count: int) -> None:
    """``client``'s ``count``-th word on the active session names ``session_id``."""
    await client.wait_for(lambda: len(pushes(client)) >= count, ANSWER_S)
    assert pushes(client)[count - 1]["session_id"] == session_id, pushes(client)


async def test_every_connection_of_the_user_follows_the_bot_and_rest_and_nobody_elses_does(
    server: ServerUnderTest, clients: list[Client], http: aiohttp.ClientSession
) -> None:
    tab = await connected(clients, server, "alice")
    phone = await connected(clients, server, "alice")
    stranger = await connected(clients, server, "bob")
    assert pushes(tab) == pushes(phone) == pushes(stranger) == [{"session_id": None, "seq": 0}]
    bot = Rest(http, server, "alice")

    started = (await bot.post("/voicebot/bot/command", {"text": "/start"}))["active_session"]["session_id"]
    for client in (tab, phone):
        await hears(client, started, 2)
    other = (await bot.post("/voicebot/create_session", {}))["session_id"]  # made elsewhere: active
    for client in (tab, phone):
        await hears(client, other, 3)
    await bot.post("/voicebot/bot/command", {"text": f"/session {started}"})
    for client in (tab, phone):
        await hears(client, started, 4)
    await bot.post("/voicebot/activate_session", {"session_id": other})
    for client in (tab, phone):
        await hears(client, other, 5)
    await bot.post("/voicebot/bot/command", {"text": "/done"})  # closes the active one and clears it
    for client in (tab, phone):
        await hears(client, None, 6)
    assert [p["seq"] for p in pushes(tab)] == [0, 1, 2, 3, 4, 5]

    # The stranger's own change reaches the stranger: by now any of alice's would have too.
    await Rest(http, server, "bob").post("/voicebot/create_session", {})
    await stranger.wait_for(lambda: len(pushes(stranger)) == 2, ANSWER_S)
    assert pushes(stranger)[1]["seq"] == 1
    assert len(pushes(tab)) == len(pushes(phone)) == 6


async def test_a_done_on_a_socket_clears_it_for_the_others(
    server: ServerUnderTest, clients: list[Client], http: aiohttp.ClientSession
) -> None:
    session_id = (await Rest(http, server, "alice").post("/voicebot/create_session", {}))["session_id"]
    recorder = await connected(clients, server, "alice")
    watcher = await connected(clients, server, "alice")
    assert pushes(watcher) == [{"session_id": session_id, "seq": 1}]
    ack = await recorder.call("session_done", {"session_id": session_id})
    assert ack["ok"] and ack["active_session_cleared"], ack
    await hears(watcher, None, 2)
    await hears(recorder, None, 2)


async def test_a_connection_back_from_away_is_told_the_change_it_missed(
    server: ServerUnderTest, clients: list[Client], http: aiohttp.ClientSession
) -> None:
    rest = Rest(http, server, "alice")
    first = (await rest.post("/voicebot/create_session", {}))["session_id"]
    away = await connected(clients, server, "alice")
    assert pushes(away)[0]["session_id"] == first
    await away.close()
    second = (await rest.post("/voicebot/create_session", {}))["session_id"]
    back = await connected(clients, server, "alice")
    assert pushes(back) == [{"session_id": second, "seq": 2}]


async def test_a_connection_that_does_not_follow_is_sent_nothing_and_a_bad_follow_is_refused(
    server: ServerUnderTest, clients: list[Client], http: aiohttp.ClientSession
) -> None:
    quiet = Client(server.url, server.token("alice"))
    clients.append(quiet)
    await quiet.connect()
    refused = await quiet.call("follow_active_session", {"user_id": "bob"})
    assert (refused["ok"], refused["error"]) == (False, "invalid_payload"), refused
    follower = await connected(clients, server, "alice")
    made = (await Rest(http, server, "alice").post("/voicebot/create_session", {}))["session_id"]
    await hears(follower, made, 2)
    assert quiet.named("active_session") == []


async def test_a_change_on_one_node_reaches_the_users_connections_on_another(
    server: ServerUnderTest,
    redis_process: RedisProcess,
    tmp_path: Path,
    clients: list[Client],
    http: aiohttp.ClientSession,
) -> None:
    other_node = await start_server(redis_process.url, tmp_path / "b")
    try:
        here = await connected(clients, server, "alice")
        there = await connected(clients, other_node, "alice")
        stranger_there = await connected(clients, other_node, "bob")
        made = (await Rest(http, server, "alice").post("/voicebot/bot/command", {"text": "/start"}))["active_session"]
        await hears(there, made["session_id"], 2)
        await hears(here, made["session_id"], 2)
        # bob's change, made on the first node, reaches bob there: alice's would have by now too.
        await Rest(http, server, "bob").post("/voicebot/create_session", {})
        await stranger_there.wait_for(lambda: len(pushes(stranger_there)) == 2, ANSWER_S)
        assert len(pushes(there)) == 2
        # The node keeps the user's channel while one of their connections is there, not after.
        await there.close()
        await here.close()
        await Rest(http, server, "alice").post("/voicebot/create_session", {})
        again = await connected(clients, other_node, "alice")
        assert pushes(again)[0]["seq"] == 2
    finally:
        for client in clients:
            await client.close()
        await other_node.stop()
