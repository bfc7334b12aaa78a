"""A node that sends nothing to a slot that moved still sees the cluster as it is (audit cluster2).

redis-py's cluster client reads which nodes are the primaries when it starts and again only when
a command of its own meets a redirect. A node that wrote nothing to a slot moved to a new primary
said it was ready while every change of that slot was answered ``unavailable`` (no replica), and an
operator's recalculation did not scan the new primary; after a node was removed, it counted the
node still running, reset, as a primary without a replica and said ``503`` for good.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio.cluster import NodesManager

from storage.cluster_map import fresh_map
from tests.cluster import RedisCluster
from tests.conftest import start_server
from tests.test_cluster import readiness, recalculated_without

# Each of the three primaries has its replica: under replica durability the node is ready.
CLUSTER_REPLICAS = 3
# Probes of /readyz, 0.1 s apart, before a test gives up on a verdict (each probe is bounded).
PROBES = 300


async def verdict(url: str, status: int) -> dict[str, Any]:
    """/readyz's answer once it is ``status`` (probes bounded by :data:`PROBES`)."""
    async with aiohttp.ClientSession() as http:
        for _ in range(PROBES):
            found, answer = await readiness(http, url)
            if found == status:
                return answer
            await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz never answered {status}: {found} {answer}")


async def test_a_primary_added_or_removed_is_seen_by_a_node_that_wrote_nothing_to_it(
    cluster: RedisCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start_server(cluster.url, tmp_path / "node", redis_cluster=True, durability="replica")
    try:
        await verdict(server.url, 200)
        # The whole map is read again only when it changed: redis-py then reconnects every
        # connection of every node, which every 2 s would cost each command path a reconnect.
        redis, readings = server.services.redis, 0
        initialize = NodesManager.initialize

        async def counted(manager: NodesManager, *args: Any, **kwargs: Any) -> Any:
            nonlocal readings
            readings += 1
            return await initialize(manager, *args, **kwargs)

        monkeypatch.setattr(NodesManager, "initialize", counted)
        for _ in range(3):
            await fresh_map(redis, max_age_s=0)
        assert readings == 0
        keys = server.services.keys
        index_owner = cluster.owner(cluster.slot_of(keys.admin_kind_of()))
        lost = await server.create_session("alice")
        while cluster.owner(cluster.slot_of(keys.session(lost))) == index_owner:
            lost = await server.create_session("alice")  # the index stays where it is
        slot = cluster.slot_of(keys.session(lost))
        home = cluster.owner(slot)
        added = cluster.add_master()
        cluster.move_slot(slot, added)  # the node sends nothing to it meanwhile
        await fresh_map(redis, max_age_s=0)
        assert readings >= 1
        drift = await recalculated_without(server, lost)
        assert (drift["added"], drift.get("relisted")) == (1, 1), drift
        assert await server.services.redis.hget(keys.admin_kind_of(), lost) == "voice"  # type: ignore[misc]
        answer = await verdict(server.url, 503)
        assert answer["degraded"].startswith("no_replica: 1 of 4 Redis primaries"), answer
        # The slot back home and the node removed, reset and still running: ready again.
        cluster.move_slot(slot, home)
        cluster.remove_node(added)
        await verdict(server.url, 200)
    finally:
        await server.stop()
