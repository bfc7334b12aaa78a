"""A person's new name reaches their other devices at once: ``PATCH /api/auth/me`` stores it and
announces it on the user's channel in one step, and every connection of the user that follows
(``follow_active_session``), on any node, is sent ``user_renamed``; nobody else's is."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.conftest import start_server
from tests.helpers import Client, RedisProcess, ServerUnderTest

ANSWER_S = 10.0  # a bound on waiting for a push, not an expected duration


async def following(clients: list[Client], server: ServerUnderTest, user: str) -> Client:
    client = Client(server.url, server.token(user))
    clients.append(client)
    await client.connect()
    ack = await client.call("follow_active_session", {})
    assert ack["ok"] is True, ack
    return client


async def rename(http: aiohttp.ClientSession, server: ServerUnderTest, user: str, name: str) -> None:
    headers = {"Authorization": f"Bearer {server.token(user)}"}
    async with http.patch(server.url + "/api/auth/me", json={"name": name}, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["name"] == name


async def test_a_rename_on_one_node_reaches_the_users_connections_on_another(
    server: ServerUnderTest, redis_process: RedisProcess, tmp_path: Path, clients: list[Client]
) -> None:
    other_node = await start_server(redis_process.url, tmp_path / "b")
    try:
        here = await following(clients, server, "alice")
        there = await following(clients, other_node, "alice")
        stranger_there = await following(clients, other_node, "bob")
        async with aiohttp.ClientSession() as http:
            await rename(http, server, "alice", "Ada Lovelace")
            await there.wait_for(lambda: len(there.named("user_renamed")) == 1, ANSWER_S)
            assert there.named("user_renamed") == [{"user_id": "alice", "name": "Ada Lovelace"}]
            await here.wait_for(lambda: len(here.named("user_renamed")) == 1, ANSWER_S)
            # In the order stored, each once; a name in another script is kept as written.
            await rename(http, other_node, "alice", "Ада")
            await here.wait_for(lambda: len(here.named("user_renamed")) == 2, ANSWER_S)
            assert [m["name"] for m in here.named("user_renamed")] == ["Ada Lovelace", "Ада"]
            # bob's rename reaches bob there; alice's connections were told nothing of it.
            await rename(http, server, "bob", "Bob")
            await stranger_there.wait_for(lambda: len(stranger_there.named("user_renamed")) == 1, ANSWER_S)
            assert stranger_there.named("user_renamed") == [{"user_id": "bob", "name": "Bob"}]
            await there.wait_for(lambda: len(there.named("user_renamed")) == 2, ANSWER_S)
            assert [m["name"] for m in there.named("user_renamed")] == ["Ada Lovelace", "Ада"]
            assert here.named("active_session") == there.named("active_session") == []
    finally:
        for client in clients:
            await client.close()
        await other_node.stop()


async def test_a_connection_that_does_not_follow_is_told_no_rename(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    quiet = Client(server.url, server.token("alice"))
    clients.append(quiet)
    await quiet.connect()
    follower = await following(clients, server, "alice")
    async with aiohttp.ClientSession() as http:
        await rename(http, server, "alice", "Ada")
    await follower.wait_for(lambda: len(follower.named("user_renamed")) == 1, ANSWER_S)
    assert quiet.named("user_renamed") == []
