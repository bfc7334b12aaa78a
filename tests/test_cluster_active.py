"""The active-session push when Redis loses writes (a restart from an AOF missing its last second,
a failover to a lagging replica): Redis counts the user's changes again from where it went back,
so the next change carries a ``seq`` the followers were given already, for another session.
They must still end on it.

What Redis losing writes looks like from outside is reproduced as in ``tests/test_rollback.py``:
the user's pointer and count are set back behind the server's back.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from tests.helpers import Client, ServerUnderTest
from tests.voice.test_active_push import ANSWER_S, connected, pushes


async def went_back(server: ServerUnderTest, redis: Redis, user: str, session_id: str, seq: int) -> None:
    """Redis comes back with the user's pointer at ``session_id`` and its count at ``seq``."""
    keys = server.services.keys
    await redis.set(keys.active_session(user), session_id)
    await redis.set(keys.active_session_seq(user), seq)


async def ends_on(client: Client, session_id: str) -> None:
    await client.wait_for(lambda: pushes(client)[-1]["session_id"] == session_id, ANSWER_S)


async def test_a_change_counted_again_after_redis_went_back_reaches_the_followers(
    server: ServerUnderTest, clients: list[Client], redis: Any
) -> None:
    """Announced live: seq 2 again, now naming another session."""
    voice = server.services.voice
    first, second, third = [await server.create_session("alice") for _ in range(3)]
    follower = await connected(clients, server, "alice")
    await voice.set_active("alice", first)
    await voice.set_active("alice", second)
    await ends_on(follower, second)
    await went_back(server, redis, "alice", first, 1)  # the change to `second` (seq 2) is lost
    await voice.set_active("alice", third)  # counted 2 again
    await ends_on(follower, third)
    assert pushes(follower)[-1] == {"session_id": third, "seq": 2}


async def test_a_change_counted_again_while_the_link_was_down_is_found_by_the_catch_up(
    server: ServerUnderTest, clients: list[Client], redis: Any
) -> None:
    """Not announced to this node (its pub/sub link was down, as across a Redis restart): the
    read made when the channel is subscribed again finds seq 2 naming another session."""
    voice = server.services.voice
    first, second, third = [await server.create_session("alice") for _ in range(3)]
    follower = await connected(clients, server, "alice")
    await voice.set_active("alice", first)
    await voice.set_active("alice", second)
    await ends_on(follower, second)
    # Redis lost `second` and, before this node's link came back, counted `third` as change 2.
    await went_back(server, redis, "alice", third, 2)
    assert await redis.client_kill_filter(_type="pubsub") >= 1
    await ends_on(follower, third)
    assert pushes(follower)[-1] == {"session_id": third, "seq": 2}
