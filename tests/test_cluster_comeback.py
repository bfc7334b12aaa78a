"""A node comes back by itself after every master of its Redis Cluster was gone at once (a cluster
restarted for maintenance): its background loops, its clients' writes and its bus serve again
soon after the cluster says it is whole, without a restart of the node.

The cause of the node not coming back: redis-py's cluster client answers a CLUSTERDOWN reply
(the restarted masters not agreeing yet) by closing every connection, other tasks' included; a
task about to write then wrote to ``None`` (an ``AttributeError``, no Redis error), and the loops
ended on it (storage/cluster_connection.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster as ClusterClient
from redis.exceptions import ConnectionError as RedisConnectionError

from server.services import connect_redis
from storage.cluster_connection import ClusterConnection, lost_under_write
from tests.background_loops import BACKGROUND_LOOPS, FAST_LOOPS, running_loops
from tests.cluster import RedisCluster, wait_until
from tests.conftest import start_server
from tests.helpers import Client, ServerUnderTest

pytestmark = pytest.mark.timeout(240)

# 3 masters without a replica (nothing fails over: the cluster is gone, then back), keeping their
# data over the restart as an operator's cluster does.
CLUSTER_REPLICAS = 0
CLUSTER_PERSISTENT = True

# Whole outages in one test: a node failed to come back in about one of three.
CYCLES = 3
# A bound, not a wait: from every master saying ``cluster_state ok`` to the node serving again
# (the heartbeat written, a client's write acknowledged, its event delivered). The node itself
# takes well under a second (the measurements are printed); a busy machine is given far more.
COMEBACK_BOUND_S = 30.0


async def test_a_write_meeting_the_cluster_clients_reset_is_a_lost_connection(cluster: RedisCluster) -> None:
    """The race itself, on the node's cluster client: its reset (what it does on a CLUSTERDOWN
    reply) closes a connection that a task checked and is about to write to, a few loop turns
    after the reset began. The write must fail as a lost connection, which the cluster client
    retries; redis-py's own connection raised ``AttributeError`` at one of these turns."""
    client = connect_redis(cluster.url, cluster=True)
    assert isinstance(client, ClusterClient)
    try:
        await client.initialize()
        node = client.get_default_node()
        for turns in range(12):
            connection = node.acquire_connection()
            await connection.connect()
            reset = asyncio.create_task(client.aclose())
            for _ in range(turns):
                await asyncio.sleep(0)
            write = asyncio.create_task(connection.send_packed_command(connection.pack_command("PING")))
            await reset
            try:
                await write
                await connection.read_response()  # written after the reset: on a new connection
            except RedisConnectionError:
                pass  # lost: the cluster client retries it
            finally:
                node.release(connection)
            await client.initialize()
    finally:
        await client.aclose()


def test_an_error_of_the_callers_own_stays_what_it_is() -> None:
    """Only a write on a torn-down stream becomes a lost connection: an attribute missing on a
    real object, or a TypeError raised outside asyncio, is a bug and is raised as it is."""
    connection = ClusterConnection(host="127.0.0.1", port=1)
    try:
        _ = None.writelines  # type: ignore[attr-defined]
    except AttributeError as on_none:
        assert isinstance(lost_under_write(connection, on_none), RedisConnectionError)
    try:
        _ = connection.no_such_thing  # type: ignore[attr-defined]
    except AttributeError as missing:
        assert lost_under_write(connection, missing) is missing
    try:
        len(5)  # type: ignore[arg-type]
    except TypeError as wrong:
        assert lost_under_write(connection, wrong) is wrong


async def test_every_connection_of_the_nodes_cluster_client_is_one_that_fails_as_lost(cluster: RedisCluster) -> None:
    """storage/cluster_connection.py puts its class into redis-py's cluster client, which takes
    none as an argument: the nodes it discovers use it too, and so do the bus's shard links
    (built from a node's class)."""
    client = connect_redis(cluster.url, cluster=True)
    assert isinstance(client, ClusterClient)
    try:
        await client.set("{a}probe", "1")
        nodes = client.get_nodes()
        assert len(nodes) == 3
        assert all(node.connection_class is ClusterConnection for node in nodes)
        connection = nodes[-1].acquire_connection()
        nodes[-1].release(connection)
        assert isinstance(connection, ClusterConnection)
    finally:
        await client.aclose()


async def test_a_node_serves_again_by_itself_after_its_whole_cluster_was_gone(
    cluster: RedisCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(
        cluster.url,
        tmp_path / "node",
        redis_cluster=True,
        **FAST_LOOPS,
    )
    caplog.set_level(logging.WARNING)
    clients: list[Client] = []
    try:
        session_id = await server.create_session("alice")
        watcher = await server.subscriber(clients, session_id)
        writer = Client(server.url, server.token("alice"))
        clients.append(writer)
        await writer.connect()
        for cycle in range(CYCLES):
            gone_at_ms = server.services.clock.now_ms()
            ports = cluster.live_ports()
            for port in ports:
                cluster.kill(port)
            await _until_the_loops_failed(caplog)
            order = random.sample(ports, len(ports))
            for port in order:
                await asyncio.to_thread(cluster.restart, port)
            assert set(BACKGROUND_LOOPS.values()) <= running_loops(), "a loop ended while the cluster was gone"
            # Every master restarted at once takes a while to agree the cluster is whole again
            # (more on a busy machine); the node's bound counts from there.
            for port in ports:
                await asyncio.to_thread(
                    wait_until, lambda port=port: cluster.client(port).cluster("info")["cluster_state"] == "ok", 120
                )
            ok_at = time.monotonic()
            beat_s = await _until_the_heartbeat_is_new(cluster, server, gone_at_ms, ok_at)
            write_s, offset = await _until_a_write_is_acknowledged(writer, session_id, cycle, ok_at)
            await watcher.wait_for(
                lambda offset=offset: offset in watcher.offsets(session_id), timeout=COMEBACK_BOUND_S
            )
            delivered_s = time.monotonic() - ok_at
            print(
                f"cycle {cycle} (restart order {order}): after cluster_state ok, heartbeat {beat_s:.2f} s,"
                f" write acked {write_s:.2f} s, its event delivered {delivered_s:.2f} s"
            )
            assert set(BACKGROUND_LOOPS.values()) <= running_loops(), "a loop ended as the cluster came back"
    finally:
        for client in clients:
            await client.close()
        await server.stop()


async def _until_the_loops_failed(caplog: pytest.LogCaptureFixture) -> None:
    """Until every loop failed a few rounds more (past the first error into the slot map's)."""
    start = {logger: _failed(caplog, logger) for logger in BACKGROUND_LOOPS}
    started = time.monotonic()
    while any(_failed(caplog, logger) < start[logger] + 3 for logger in BACKGROUND_LOOPS):
        if not set(BACKGROUND_LOOPS.values()) <= running_loops():
            return
        assert time.monotonic() - started < 20, "the loops did not go round while the cluster was gone"
        await asyncio.sleep(0.05)


def _failed(caplog: pytest.LogCaptureFixture, logger: str) -> int:
    return sum(1 for record in caplog.records if record.name == logger)


async def _until_the_heartbeat_is_new(
    cluster: RedisCluster, server: ServerUnderTest, gone_at_ms: int, ok_at: float
) -> float:
    """Seconds from ``ok_at`` until the node's heartbeat is one written after the outage, read by
    a client of the test's own (not the node's, whose state is under test)."""
    key = server.services.keys.admin_nodes()
    owner = cluster.owner(cluster.slot_of(key))

    def beats() -> list[int]:
        return [json.loads(text)["ts"] for text in cluster.client(owner).hvals(key)]

    while not any(ts > gone_at_ms for ts in await asyncio.to_thread(beats)):
        assert time.monotonic() - ok_at < COMEBACK_BOUND_S, "the heartbeat was not written again"
        await asyncio.sleep(0.05)
    return time.monotonic() - ok_at


async def _until_a_write_is_acknowledged(
    writer: Client, session_id: str, cycle: int, ok_at: float
) -> tuple[float, int]:
    """Seconds from ``ok_at`` until a status change is acknowledged, and its event's offset. A
    try the node answers with an error (Redis still settling) is tried again."""
    status = ("error", "ready")[cycle % 2]
    while True:
        ack = await writer.call("set_session_status", {"session_id": session_id, "status": status})
        if ack.get("ok"):
            assert ack["changed"] is True, ack
            return time.monotonic() - ok_at, int(ack["offset"])
        assert time.monotonic() - ok_at < COMEBACK_BOUND_S, f"no write was acknowledged: {ack}"
        await asyncio.sleep(0.1)
