"""tests/test_retry_idempotency_kill.py on a Redis Cluster: the key's claim (the caller's slot), the
stream and its audience session (each in its own slot) are written by separate steps, and a node
killed between them still leaves one stream to the resend.

Nothing spans slots: the dedupe is each create's own refusal of a taken id (``session_create.lua``,
in the object's slot), and the ids come from the claim (one step in the caller's slot)."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.cluster import RedisCluster
from tests.helpers import ServerUnderTest
from tests.test_retry_idempotency_kill import (
    AFTER_THE_AUDIENCE,
    BEFORE_THE_ANSWER,
    _cut_by_the_kill,
    _resend,
    doomed_node,
)

CLUSTER_REPLICAS = 0  # no failover here: three masters, the slots apart


async def test_a_stream_create_killed_on_a_cluster_is_made_once(
    cluster: RedisCluster, nodes: list[ServerUnderTest], tmp_path: Path
) -> None:
    live = nodes[0]
    redis, keys = live.services.redis, live.services.keys
    headers = {"Authorization": f"Bearer {live.token('alice')}"}
    for n, kill_at in enumerate([BEFORE_THE_ANSWER, AFTER_THE_AUDIENCE]):
        sent = {**headers, "Idempotency-Key": f"kill-{uuid.uuid4()}"}
        async with doomed_node(cluster.url, tmp_path / f"doomed{n}", kill_at, SESSIONHUB_REDIS_CLUSTER="true") as (
            url,
            _,
        ):
            await _cut_by_the_kill(url, "/api/streams", {"title": "Raid night"}, sent)
        status, answer = await _resend(live, "/api/streams", {"title": "Raid night"}, sent)
        assert status == 201, answer
        made = answer["session"]["session_id"]
        streams = await redis.zrange(keys.user_streams("alice"), 0, -1)
        assert len(streams) == n + 1 and made in streams, "the resend made a second stream"
        audience = await redis.hget(keys.session(made), "audience_id")
        assert audience and await redis.exists(keys.session(audience))
    # Two creates, each a stream and its audience session: nothing more.
    assert await redis.zcard(keys.all_sessions()) == 4
