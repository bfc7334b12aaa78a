"""sessionhub on a real Redis Cluster: 3 masters on loopback, sharded pub/sub, one slot per script."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis import Redis as SyncRedis

from tests.conftest import start_server
from tests.helpers import OWNER, Client, ServerUnderTest, redis_binary

STATUSES = ["recording", "paused"]
MASTERS = 3


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_ports(count: int) -> list[int]:
    """Ports whose cluster-bus companions (port + 10000) are free too; never the default ones."""
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < count:
        port = rng.randrange(20000, 29000)
        if port not in ports and _free(port) and _free(port + 10000):
            ports.append(port)
    return ports


class RedisCluster:
    """Three redis-server masters with cluster mode on, joined by redis-cli --cluster create."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports = _cluster_ports(MASTERS)
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        for port in self.ports:
            folder = self.root / str(port)
            folder.mkdir(parents=True)
            self.processes.append(
                subprocess.Popen(
                    [redis_binary(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder),
                     "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--save", "",
                     "--appendonly", "no"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.ports:
            self._wait(lambda port=port: SyncRedis(port=port).ping())
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=30,
        )
        for port in self.ports:
            self._wait(lambda port=port: SyncRedis(port=port).cluster("info")["cluster_state"] == "ok")

    @staticmethod
    def _wait(probe: Any) -> None:
        deadline = time.monotonic() + 20
        while True:
            try:
                if probe():
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the cluster did not come up")
            time.sleep(0.05)

    def masters(self) -> list[SyncRedis]:
        return [SyncRedis(port=port, decode_responses=True) for port in self.ports]

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    if shutil.which("redis-cli") is None:
        pytest.fail("redis-cli is needed to form the cluster (Debian package redis-tools)")
    made = RedisCluster(tmp_path_factory.mktemp("cluster"))
    made.start()
    yield made
    made.stop()


@pytest_asyncio.fixture
async def nodes(cluster: RedisCluster, tmp_path: Path) -> AsyncIterator[list[ServerUnderTest]]:
    for master in cluster.masters():
        master.flushall()
    servers = [await start_server(cluster.url, tmp_path / f"node{i}", redis_cluster=True) for i in range(2)]
    yield servers
    for server in servers:
        await server.stop()


async def toggle(server: ServerUnderTest, session_id: str, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        await server.services.voice.set_status(session_id, STATUSES[i % 2], OWNER)


async def test_two_nodes_deliver_every_event_of_sessions_on_every_shard(
    nodes: list[ServerUnderTest], clients: list[Client], cluster: RedisCluster
) -> None:
    writer, reader = nodes
    sessions = [await writer.create_session("alice") for _ in range(6)]
    owners = {cluster.masters()[0].cluster("keyslot", writer.services.keys.log(s)) for s in sessions}
    assert len(owners) == len(sessions)  # different slots: the sessions spread over the shards
    watchers = [await reader.subscriber(clients, s) for s in sessions]
    for session_id in sessions:
        await toggle(writer, session_id, 5)
    for watcher, session_id in zip(watchers, sessions, strict=True):
        await watcher.wait_for(lambda w=watcher, s=session_id: w.offsets(s) == [2, 3, 4, 5, 6], timeout=10)


async def test_resubscribe_replays_on_a_cluster(nodes: list[ServerUnderTest], clients: list[Client]) -> None:
    writer, reader = nodes
    session_id = await writer.create_session("alice")
    first = await reader.subscriber(clients, session_id)
    await toggle(writer, session_id, 2)
    await first.wait_for(lambda: first.offsets(session_id) == [2, 3])
    epoch = first.named("session_status")[-1]["epoch"]
    last_id = first.named("session_status")[-1]["id"]
    await first.close()
    await toggle(writer, session_id, 3, start=2)
    again = Client(reader.url, reader.token("alice"))
    clients.append(again)
    await again.connect()
    resume = {"session_id": session_id, "epoch": epoch, "offset": 3, "last_id": last_id}
    ack = await again.call("subscribe_on_session", resume)
    assert ack["recovered"] is True and again.offsets(session_id) == [4, 5, 6]


async def test_killing_the_shard_links_loses_no_event(
    nodes: list[ServerUnderTest], clients: list[Client], cluster: RedisCluster
) -> None:
    writer, reader = nodes
    sessions = [await writer.create_session("alice") for _ in range(3)]
    watchers = [await reader.subscriber(clients, s) for s in sessions]
    masters = cluster.masters()
    for i in range(60):
        for session_id in sessions:
            await writer.services.voice.set_status(session_id, STATUSES[i % 2], OWNER)
        if i % 20 == 10:
            assert sum(m.client_kill_filter(_type="pubsub") for m in masters) >= 1
        await asyncio.sleep(0.01)
    for watcher, session_id in zip(watchers, sessions, strict=True):
        await watcher.wait_for(lambda w=watcher, s=session_id: w.offsets(s) == list(range(2, 62)), timeout=15)


async def test_listings_and_jobs_work_across_slots(nodes: list[ServerUnderTest], clients: list[Client]) -> None:
    writer, _ = nodes
    created = [await writer.create_session("alice", f"s{i}") for i in range(4)]
    listed = await writer.services.sessions.recent("alice", limit=10)
    assert [r["id"] for r in listed] == list(reversed(created))
    alice = Client(writer.url, writer.token("alice"))
    clients.append(alice)
    await alice.connect()
    ack = await alice.call("session_done", {"session_id": created[0]})
    assert ack["ok"] is True and ack["job_id"]
