"""A person's new name reaches their other devices at once: ``PATCH /api/auth/me`` stores it and
announces it on the user's channel in one step, and every connection of the user that follows
(``follow_active_session``), on any node, is sent ``user_renamed``; nobody else's is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


async def test_a_connection_that_follows_the_user_hears_its_renames_and_nothing_else(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    """``follow_user`` (every page's identity badge): its ack carries the name, each rename is
    pushed once, the active session's changes on the same channel are not."""
    badge = Client(server.url, server.token("alice"))
    clients.append(badge)
    await badge.connect()
    assert await badge.call("follow_user", {}) == {"ok": True, "user_id": "alice", "name": ""}
    fab = await following(clients, server, "alice")
    async with aiohttp.ClientSession() as http:
        await rename(http, server, "alice", "Ada")
        await badge.wait_for(lambda: len(badge.named("user_renamed")) == 1, ANSWER_S)
        assert badge.named("user_renamed") == [{"user_id": "alice", "name": "Ada"}]
        # Asked again (a page's second look): the name as it stands, and still one push a rename.
        assert await badge.call("follow_user") == {"ok": True, "user_id": "alice", "name": "Ada"}
        # The follower of the active session hears its change; the badge's connection does not,
        # though the rename announced after it on the same channel reaches it.
        await server.services.voice.set_active("alice", await server.create_session("alice"))
        await fab.wait_for(lambda: len(fab.named("active_session")) == 1, ANSWER_S)
        await rename(http, server, "alice", "Ada L.")
        await badge.wait_for(lambda: len(badge.named("user_renamed")) == 2, ANSWER_S)
        assert [m["name"] for m in badge.named("user_renamed")] == ["Ada", "Ada L."]
        assert badge.named("active_session") == []
        # A connection that follows both ways is told each rename once; its follow's ack names it.
        both = Client(server.url, server.token("alice"))
        clients.append(both)
        await both.connect()
        assert (await both.call("follow_active_session"))["name"] == "Ada L."
        assert (await both.call("follow_user"))["name"] == "Ada L."
        await rename(http, server, "alice", "A. L.")
        await badge.wait_for(lambda: len(badge.named("user_renamed")) == 3, ANSWER_S)
        await both.wait_for(lambda: len(both.named("user_renamed")) == 1, ANSWER_S)
        await rename(http, server, "alice", "Ada, again")
        await both.wait_for(lambda: len(both.named("user_renamed")) >= 2, ANSWER_S)
        assert [m["name"] for m in both.named("user_renamed")] == ["A. L.", "Ada, again"]


async def test_a_name_followed_with_a_token_name_and_no_profile_is_the_tokens(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    """As GET /api/auth/me answers: a token minted with a name, for a user without a profile."""
    client = Client(server.url, server.token("opsbot", name="Ops"))
    clients.append(client)
    await client.connect()
    assert await client.call("follow_user") == {"ok": True, "user_id": "opsbot", "name": "Ops"}


async def test_a_rename_stored_while_the_nodes_link_was_down_reaches_its_connections_when_it_is_back(
    server: ServerUnderTest, clients: list[Client], redis: Any
) -> None:
    """Announced while this node's pub/sub link was down (a Redis restart, a failover), a rename
    reached nobody here: the link coming back reads the name again and sends it, to the badge's
    connection and to the active session's follower alike; an unchanged name is not sent."""
    badge = Client(server.url, server.token("alice"))
    clients.append(badge)
    await badge.connect()
    assert (await badge.call("follow_user"))["name"] == ""
    fab = await following(clients, server, "alice")
    async with aiohttp.ClientSession() as http:
        await rename(http, server, "alice", "Ada")
    await badge.wait_for(lambda: len(badge.named("user_renamed")) == 1, ANSWER_S)
    await fab.wait_for(lambda: len(fab.named("user_renamed")) == 1, ANSWER_S)
    # Stored where the rename stores it, announced to nobody: what a lost announcement leaves.
    await redis.hset(server.services.keys.user_profile("alice"), "name", "Ada Lovelace")
    assert await redis.client_kill_filter(_type="pubsub") >= 1
    await badge.wait_for(lambda: len(badge.named("user_renamed")) == 2, ANSWER_S)
    await fab.wait_for(lambda: len(fab.named("user_renamed")) == 2, ANSWER_S)
    assert (
        badge.named("user_renamed")[-1] == fab.named("user_renamed")[-1] == {"user_id": "alice", "name": "Ada Lovelace"}
    )
    # The link back again with nothing changed: nothing sent (a later rename is the next push).
    assert await redis.client_kill_filter(_type="pubsub") >= 1
    async with aiohttp.ClientSession() as http:
        await rename(http, server, "alice", "A. L.")
    await badge.wait_for(lambda: len(badge.named("user_renamed")) >= 3, ANSWER_S)
    assert [m["name"] for m in badge.named("user_renamed")] == ["Ada", "Ada Lovelace", "A. L."]
