"""On a real Redis Cluster: a rename, stored and announced in one step on the user's shard
(SPUBLISH on the user's channel), reaches the user's following connection on the other node."""

from __future__ import annotations

from tests.cluster import RedisCluster
from tests.helpers import Client, ServerUnderTest
from tests.test_cluster import cluster, nodes  # noqa: F401 - the cluster fixtures

ANSWER_S = 10.0  # a bound on waiting for a push, not an expected duration


async def test_a_rename_is_pushed_across_nodes_on_the_users_shard(
    nodes: list[ServerUnderTest],  # noqa: F811
    clients: list[Client],
    cluster: RedisCluster,  # noqa: F811
) -> None:
    writer, reader = nodes
    keys = writer.services.keys
    assert cluster.slot_of(keys.user_profile("alice")) == cluster.slot_of(keys.active_session_channel("alice"))
    followers: dict[str, Client] = {}
    for user in ("alice", "bob"):
        client = followers[user] = Client(reader.url, reader.token(user))
        clients.append(client)
        await client.connect()
        assert (await client.call("follow_active_session", {}))["ok"] is True
    await writer.services.identities.rename("alice", "Ada")
    alice = followers["alice"]
    await alice.wait_for(lambda: bool(alice.named("user_renamed")), timeout=ANSWER_S)
    assert alice.named("user_renamed") == [{"user_id": "alice", "name": "Ada"}]
    assert (await reader.services.identities.profile("alice")).name == "Ada"
    assert followers["bob"].named("user_renamed") == []
