"""sessionhub on a real Redis Cluster: 3 masters on loopback, sharded pub/sub, one slot per script."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.cluster import RedisCluster, need_redis_cli
from tests.conftest import start_server
from tests.helpers import OWNER, Client, ServerUnderTest

STATUSES = ["recording", "paused"]
MASTERS = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    need_redis_cli()
    made = RedisCluster(tmp_path_factory.mktemp("cluster"))
    made.start()
    yield made
    made.stop()


@pytest_asyncio.fixture
async def nodes(cluster: RedisCluster, tmp_path: Path) -> AsyncIterator[list[ServerUnderTest]]:
    for port in cluster.masters():
        cluster.client(port).flushall()
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
    owners = {cluster.slot_of(writer.services.keys.log(s)) for s in sessions}
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
    masters = [cluster.client(port) for port in cluster.masters()]
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


async def test_a_listening_device_follows_its_history_live(nodes: list[ServerUnderTest], clients: list[Client]) -> None:
    """Listening scripts publish with SPUBLISH on a cluster like every other (issue 24, item 3):
    a phone reporting on one node is followed live by a laptop on the other."""
    from tests.listening.support import listener

    reporting, following = nodes
    phone = await listener(reporting, clients, device_id="phone", subscribe=False)
    laptop = await listener(following, clients, device_id="laptop")
    assert laptop.history_id == phone.history_id
    started = await phone.report("book-1", "playing")
    assert started["ok"] is True, started
    await laptop.client.wait_for(lambda: len(laptop.log_events()) >= 1, timeout=5)
    [(name, data)] = laptop.log_events()
    assert name == "listening_session" and data["data"]["action"] == "started"
