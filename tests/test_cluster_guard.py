"""The storage guard on a Redis Cluster whose primaries stop answering: it reads every primary's
INFO memory, and a primary that hangs, or a cluster gone entirely, must neither hold nor refuse
the creates it guards; it goes by its last figures (handlers/storage_guard.py)."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from auth.claims import Permission
from handlers.metrics import Metrics
from handlers.storage_guard import StorageGuard
from server.services import connect_redis
from storage.clock import Clock
from tests.background_loops import BACKGROUND_LOOPS, FAST_LOOPS, running_loops
from tests.cluster import RedisCluster, wait_until
from tests.conftest import start_server

pytestmark = pytest.mark.timeout(90)

# A bound on an admit that must not wait for the hung read, far above the guard's own wait.
ADMIT_BOUND_S = 20.0


# The cluster: tests/cluster_fixtures.py's, 3 masters without a replica (no failover).
CLUSTER_REPLICAS = 0


@pytest_asyncio.fixture
async def redis(cluster: RedisCluster) -> AsyncIterator[Redis]:
    client = connect_redis(cluster.url, cluster=True)
    yield client
    await client.aclose()


def guard_on(redis: Redis, clock: Clock) -> StorageGuard:
    return StorageGuard(redis=redis, clock=clock, metrics=Metrics(), ratio=0.9, budget_bytes=1 << 40, refresh_ms=1000)


async def test_a_primary_that_hangs_holds_no_create(cluster: RedisCluster, redis: Redis) -> None:
    clock = Clock()
    guard = guard_on(redis, clock)
    await guard.admit("test")  # the first figures, every primary answering
    hung = cluster.processes[cluster.masters()[1]]
    hung.send_signal(signal.SIGSTOP)  # its socket stays open and answers nothing, INFO included
    try:
        clock.shift_ms += 1000  # the figures are due for a refresh
        await asyncio.wait_for(guard.admit("test"), ADMIT_BOUND_S)
        # Admitted on the last figures while the read still waits for the hung primary.
        assert guard.reading
        assert (await guard.state()).budget_bytes == 1 << 40
    finally:
        hung.send_signal(signal.SIGCONT)
    await asyncio.wait_for(guard.admit("test"), ADMIT_BOUND_S)


async def test_a_cluster_gone_entirely_refuses_no_create_while_the_figures_last(
    cluster: RedisCluster, redis: Redis
) -> None:
    """No node answers: the cluster client's error is its own (not a RedisError), and it must be
    a failed read like any other, not a refusal of every create."""
    clock = Clock()
    guard = guard_on(redis, clock)
    await guard.admit("test")
    for port in cluster.live_ports():
        cluster.kill(port)
    clock.shift_ms += 1000
    await asyncio.wait_for(guard.admit("test"), ADMIT_BOUND_S)
    assert (await guard.state()).used_bytes > 0  # the last figures stand


async def test_a_primary_that_hangs_holds_no_admin_alerts(cluster: RedisCluster, tmp_path: Path) -> None:
    """The memory alert reads every primary's INFO memory: one that hangs (a cluster client has
    no socket timeout) held /admin/alerts for good. Its read is bounded as the guard's is, and
    the alert says Redis did not answer. The hung primary holds none of the keys the other
    alerts read (the admin indexes, the job queue), which would hold the request themselves."""
    server = await start_server(cluster.url, tmp_path / "node", redis_cluster=True)
    try:
        server.services.storage_guard.read_bound_s = 1.0  # the bound, short for the test
        keys = server.services.keys
        held = {cluster.owner(cluster.slot_of(key)) for key in (keys.admin_nodes(), keys.jobs())}
        hung_port = next(port for port in cluster.masters() if port not in held)
        token = server.token("root", perms=(Permission.ADMIN,))
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            async with http.get(f"{server.url}/admin/alerts") as response:  # everyone answering
                assert response.status == 200
                assert "redis_unreachable" not in [alert["alert"] for alert in (await response.json())["alerts"]]
            hung = cluster.processes[hung_port]
            hung.send_signal(signal.SIGSTOP)
            try:
                async with asyncio.timeout(ADMIT_BOUND_S), http.get(f"{server.url}/admin/alerts") as response:
                    assert response.status == 200
                    alerts = (await response.json())["alerts"]
            finally:
                hung.send_signal(signal.SIGCONT)
        assert "redis_unreachable" in [alert["alert"] for alert in alerts], alerts
    finally:
        await server.stop()


async def test_a_cluster_gone_for_a_while_ends_no_background_loop(
    cluster: RedisCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With no node answering, the cluster client raises an error of its own (no RedisError)
    once it tries to read the slot map again: the revocation watch and the deletion follow-ups
    caught only RedisError and OSError and ended on it for good, the node running on without
    them (revoked devices no longer signed out). Every loop goes on, and works once it is back."""
    server = await start_server(
        cluster.url,
        tmp_path / "node",
        redis_cluster=True,
        **FAST_LOOPS,
    )
    caplog.set_level(logging.WARNING)
    try:
        assert set(BACKGROUND_LOOPS.values()) <= running_loops()
        ports = cluster.live_ports()
        for port in ports:
            cluster.kill(port)

        def failed_rounds(logger: str) -> int:
            return sum(1 for record in caplog.records if record.name == logger)

        started = time.monotonic()
        # Until every loop went round failing a few times (past the first failure, a plain
        # connection error, into the slot map's), or one of them ended.
        while any(failed_rounds(logger) < 5 for logger in BACKGROUND_LOOPS):
            if not set(BACKGROUND_LOOPS.values()) <= running_loops():
                break
            assert time.monotonic() - started < 20, {logger: failed_rounds(logger) for logger in BACKGROUND_LOOPS}
            await asyncio.sleep(0.05)
        for port in ports:
            await asyncio.to_thread(cluster.restart, port)
        assert set(BACKGROUND_LOOPS.values()) <= running_loops(), "a loop ended while the cluster was gone"
        # Every node restarted at once takes a while to agree the cluster is whole again (longer
        # on a busy machine: a fresh-clone run waited more than 30 s); the server is given its
        # 30 s from there.
        for port in ports:
            await asyncio.to_thread(
                wait_until, lambda port=port: cluster.client(port).cluster("info")["cluster_state"] == "ok", 120
            )
        # Back: the heartbeat is written again (the restarted nodes kept nothing). It was not in
        # about one run in three: the loop had ended on an AttributeError as the cluster came back
        # (storage/cluster_connection.py; tests/test_cluster_comeback.py bounds the comeback).
        keys = server.services.keys
        started = time.monotonic()
        while not await _answered(server.services.redis.hlen(keys.admin_nodes())):
            assert time.monotonic() - started < 30, "the heartbeat was not written again"
            await asyncio.sleep(0.1)
    finally:
        await server.stop()


async def _answered(call: Awaitable[int]) -> int:
    try:
        return await call
    except Exception:  # the cluster is still coming back
        return 0
