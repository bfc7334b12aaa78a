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

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.cluster import RedisCluster, running_cluster
from tests.conftest import start_server
from tests.helpers import Client, ServerUnderTest


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """3 masters, the first with ``CLUSTER_REPLICAS`` replicas (one unless the module says)."""
    replicas = int(getattr(request.module, "CLUSTER_REPLICAS", 1))
    persistent = bool(getattr(request.module, "CLUSTER_PERSISTENT", False))
    with running_cluster(
        tmp_path_factory.mktemp("cluster"), masters=3, replicas=replicas, persistent=persistent
    ) as made:
        yield made


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


@pytest_asyncio.fixture
async def made() -> AsyncIterator[list[Client]]:
    """Clients a test makes, closed after it."""
    clients: list[Client] = []
    yield clients
    for client in clients:
        await client.close()
