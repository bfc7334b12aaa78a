"""A node remembers a session's kind and owner for subscriptions (SessionDirectory.known).

One lookup per node for many subscribers; the read check still runs on every subscription;
a session deleted since, here or on another node, is not found and nothing is written for it.
"""

from __future__ import annotations

from typing import Any

from auth.claims import Permission
from storage.lean_redis import LeanRedis
from tests.helpers import Client, ServerUnderTest


def requests(server: ServerUnderTest) -> int:
    redis = server.services.redis
    assert isinstance(redis, LeanRedis) and redis.lean is not None
    return redis.lean.requests


async def subscribe(server: ServerUnderTest, clients: list[Client], session_id: str, user: str, **kw: Any) -> Any:
    client = Client(server.url, server.token(user, **kw))
    clients.append(client)
    await client.connect()
    return await client.call("subscribe_on_session", {"session_id": session_id})


async def test_later_subscribers_skip_the_lookup(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    assert (await subscribe(server, clients, session_id, "alice"))["ok"] is True
    await server.services.sessions.settle()  # the first lookup's access bookkeeping
    before = requests(server)
    assert (await subscribe(server, clients, session_id, "alice"))["ok"] is True
    assert requests(server) - before == 1  # the snapshot only: no kind lookup


async def test_the_read_check_runs_for_every_subscriber(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    assert (await subscribe(server, clients, session_id, "alice"))["ok"] is True
    refused = await subscribe(server, clients, session_id, "carol", perms=(Permission.READ_OWN,))
    assert refused["error"] == "forbidden"


async def test_a_session_deleted_elsewhere_is_not_found_and_left_alone(
    server: ServerUnderTest, clients: list[Client], redis: Any
) -> None:
    session_id = await server.create_session("alice")
    ack = await subscribe(server, clients, session_id, "alice")
    assert ack["ok"] is True
    # Another node's operator deleted it: this node was not told.
    await redis.delete(*[key async for key in redis.scan_iter(match=f"*{session_id}*")])
    assert (await subscribe(server, clients, session_id, "alice"))["error"] == "session_not_found"
    for epoch in (ack["epoch"], ""):
        client = Client(server.url, server.token("alice"))
        clients.append(client)
        await client.connect()
        replay = {"session_id": session_id, "epoch": epoch, "offset": ack["offset"] + 5}
        assert (await client.call("subscribe_on_session", replay))["error"] == "session_not_found"
    assert [key async for key in redis.scan_iter(match=f"*{session_id}*")] == []
