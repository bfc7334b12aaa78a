"""A viewer's clip reaches their device on another serving node over a real Redis Cluster: the
announcement runs in the user's slot (``own_clip_announce.lua``, sharded pub/sub), not the
stream's, and the follower's node has subscribed that channel on its shard."""

from __future__ import annotations

import pytest

from tests.cluster import RedisCluster
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import connect, create_stream

pytestmark = pytest.mark.timeout(120)
CLUSTER_REPLICAS = 0
NODE_SETTINGS = {"clips_cooldown_s": 0}


async def test_a_clip_reaches_the_viewers_device_on_the_other_node(
    cluster: RedisCluster, nodes: list[ServerUnderTest], clients: list[Client]
) -> None:
    first, second = nodes
    session_id = await create_stream(first)
    owner = await connect(first, clients, "alice")
    assert (await owner.call("stream_set_state", {"session_id": session_id, "action": "start"}))["ok"] is True
    keys = first.services.keys
    # Users whose channels live on another shard than the stream's, and on each shard.
    stream_shard = cluster.owner(cluster.slot_of(keys.session(session_id)))
    users = [f"viewer-{i}" for i in range(40)]
    apart = [u for u in users if cluster.owner(cluster.slot_of(keys.active_session_channel(u))) != stream_shard]
    assert apart, "no user on another shard"
    for user in (apart[0], users[0]):
        laptop = await connect(first, clients, user)
        assert (await laptop.call("follow_user", {}))["ok"] is True
        phone = await connect(second, clients, user)
        ack = await phone.call("clip_submit", {"session_id": session_id, "note": f"{user}'s"})
        assert ack["ok"] is True, ack
        await laptop.wait_for(
            lambda laptop=laptop, ack=ack: laptop.named("own_clip") == [{"session_id": session_id, "clip": ack["clip"]}]
        )
