"""The guest sweeper on a real Redis Cluster: every step it takes touches one hash slot.

A gone guest's sessions, its own keys ({u:<id>}), its devices ({f:<id>}) and the global index
live on different shards: a step that touched two of them would fail with CROSSSLOT here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from handlers.guest_retention import GUEST_SWEEPER
from storage.clock import Clock
from tests.cluster import RedisCluster, running_cluster
from tests.cluster_fixtures import close_cluster_nodes_left_open
from tests.conftest import start_server
from tests.identity.test_guest_retention import blob_files, owning_guest


@pytest_asyncio.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RedisCluster]:
    with running_cluster(tmp_path_factory.mktemp("cluster")) as made:
        try:
            yield made
        finally:
            await close_cluster_nodes_left_open()  # see there


async def test_a_gone_guest_is_swept_on_a_cluster(cluster: RedisCluster, tmp_path: Path) -> None:
    clock = Clock()
    srv = await start_server(cluster.url, tmp_path, clock=clock, redis_cluster=True, guest_idle_s=3600)
    try:
        async with aiohttp.ClientSession() as http:
            _, ids = await owning_guest(srv, http)
        keys, redis = srv.services.keys, srv.services.redis
        slots = {cluster.slot_of(keys.session(ids[kind])) for kind in ("voice", "stream", "listening")}
        assert len(slots | {cluster.slot_of(keys.user_profile(ids["user"]))}) > 1  # spread over slots
        clock.shift_ms += (3600 + srv.services.limits.guest_token_ttl_s + 1) * 1000
        swept = await srv.app[GUEST_SWEEPER].sweep()
        assert (swept.guests_forgotten, swept.sessions_deleted) == (1, 3), swept
        for kind in ("voice", "stream", "listening"):
            assert not await redis.exists(keys.session(ids[kind])), kind
        assert await redis.exists(keys.session(ids["pattern"]))
        assert not await redis.exists(keys.user_profile(ids["user"]))
        assert await redis.zcard(keys.guests_owning()) == 0
        assert await blob_files(srv) == []
    finally:
        await srv.stop()
