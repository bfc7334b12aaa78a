"""With one master of a Redis Cluster down, the other shards' writes go on, scripts not yet
loaded there included.

redis-py's way to load a script Redis lacks is ``SCRIPT LOAD``, which a cluster client sends to
every primary: with any one of them down (killed, until its replica takes over; and a promoted
replica holds no scripts, they are not replicated) every write whose script a shard had not run
yet failed on the healthy shards too, ``unavailable``. The give-back of an Idempotency-Key was
one: it failed silently and resends were answered 409 "still running" until the claim ran out
(audit "killmaster"). The script's body is now sent to the one shard that lacks it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from storage.idempotency import IdempotentAnswers
from tests.cluster import RedisCluster
from tests.conftest import start_server

pytestmark = pytest.mark.timeout(120)

# No replica: the killed master's slots stay down, the others' go on serving (below).
CLUSTER_REPLICAS = 0


async def test_a_script_new_to_a_healthy_shard_runs_while_another_master_is_down(
    cluster: RedisCluster, tmp_path: Path
) -> None:
    for port in cluster.master_ports:  # the healthy shards keep serving their own slots
        cluster.client(port).config_set("cluster-require-full-coverage", "no")
    server = await start_server(cluster.url, tmp_path, redis_cluster=True)
    try:
        answers = IdempotentAnswers(server.services.redis, server.services.keys, max_answers=10)  # by script
        key = f"k-{uuid.uuid4()}"
        claim_key = server.services.keys.idempotent_answer("test", "alice", key)
        first = cluster.master_ports[0]
        slot = int(cluster.client(first).execute_command("CLUSTER", "KEYSLOT", claim_key))
        owner = cluster.owner_seen_by(first, slot)
        assert owner is not None
        cluster.kill(next(port for port in cluster.master_ports if port != owner))
        shas = (answers._claim.sha, answers._release.sha)
        assert cluster.client(owner).execute_command("SCRIPT", "EXISTS", *shas) == [0, 0]
        # The claim's and the give-back's first runs on the owner's shard.
        assert await answers.claim("test", "alice", key) is None
        await answers.release("test", "alice", key)
        assert await answers.claim("test", "alice", key) is None  # given back: a resend runs at once
        # Each is loaded where it ran, for the EVALSHA of the next call.
        assert cluster.client(owner).execute_command("SCRIPT", "EXISTS", *shas) == [1, 1]
    finally:
        await server.stop()
