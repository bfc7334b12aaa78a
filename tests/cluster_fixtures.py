"""The fixtures of the tests that move a real Redis Cluster under two serving nodes, written once.

Every test module finds them by name (tests/conftest.py's ``pytest_plugins``); a module that
defines a fixture of the same name (tests/test_cluster.py's module-wide cluster) uses its own.
What differs between modules is said by module constants, read here:

- ``CLUSTER_REPLICAS`` (default 1): replicas attached to the first masters of the 3; one is what
  a failover needs, 0 a shard that cannot fail over.
- ``CLUSTER_PERSISTENT`` (default False): nodes that keep their data over a kill and restart.
- ``NODE_SETTINGS`` (default none): settings of both nodes, as ``start_server`` takes them.

Every cluster is the test's own (function scope): these tests kill and promote its nodes.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio.cluster import ClusterNode

from tests.cluster import RedisCluster, running_cluster
from tests.conftest import start_server
from tests.helpers import Client, ServerUnderTest


@pytest_asyncio.fixture
async def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RedisCluster]:
    """3 masters, the first with ``CLUSTER_REPLICAS`` replicas (one unless the module says)."""
    replicas = int(getattr(request.module, "CLUSTER_REPLICAS", 1))
    persistent = bool(getattr(request.module, "CLUSTER_PERSISTENT", False))
    with running_cluster(
        tmp_path_factory.mktemp("cluster"), masters=3, replicas=replicas, persistent=persistent
    ) as made:
        try:
            yield made
        finally:
            await close_cluster_nodes_left_open()


@pytest_asyncio.fixture
async def nodes(
    request: pytest.FixtureRequest, cluster: RedisCluster, tmp_path: Path
) -> AsyncIterator[list[ServerUnderTest]]:
    """Two serving nodes on ``cluster``, with the module's ``NODE_SETTINGS``."""
    settings: dict[str, Any] = dict(getattr(request.module, "NODE_SETTINGS", {}))
    servers: list[ServerUnderTest] = []
    try:
        for i in range(2):
            servers.append(await start_server(cluster.url, tmp_path / f"node{i}", redis_cluster=True, **settings))
        yield servers
    finally:
        for server in servers:
            await server.stop()


async def close_cluster_nodes_left_open() -> None:
    """Close every connection of every cluster node object still in memory, reachable or not.

    Under a failover redis-py's cluster client can drop a node object whose connection is open
    (after a ``CLUSTERDOWN`` it closes itself and builds its node map again, and a node of the new
    map can be replaced while in use); its last ``aclose`` no longer reaches it. pyproject.toml
    lets redis-py's own warnings for such a node pass, and its ``__del__`` closes it, when it is
    collected while its Redis is up. Collected after the test's cluster was stopped, its socket
    had read EOF and left the event loop's selector: the socket and its transport were finalized
    unclosed, and the stdlib's ResourceWarnings failed whichever later test was running (a CI run
    failed ``test_a_failover_to_a_lagging_replica_never_hands_out_an_offset_twice`` on a socket to
    an earlier test's node). Closed here (by every cluster fixture, the servers on it stopped and
    the cluster not yet), nothing is left to warn.
    """
    # Not collected first: a dropped node's connection to a master the test killed has read EOF,
    # and collecting it is what warns. The collector's list holds garbage not yet collected too.
    for node in [obj for obj in gc.get_objects() if isinstance(obj, ClusterNode)]:
        with contextlib.suppress(Exception):  # a node whose Redis is gone may fail to close: it is closed
            await node.disconnect()


@pytest_asyncio.fixture
async def made() -> AsyncIterator[list[Client]]:
    """Clients a test makes, closed after it."""
    clients: list[Client] = []
    yield clients
    for client in clients:
        await client.close()
