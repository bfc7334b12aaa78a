"""Replay on resubscribe: exactly the missed events in order, or a snapshot when they are gone."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest

from tests.conftest import start_server
from tests.helpers import OWNER, Client, ServerUnderTest

STATUSES = ["recording", "paused"]


async def toggle(server: ServerUnderTest, session_id: str, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        await server.services.voice.set_status(session_id, STATUSES[i % 2], OWNER)


async def test_resubscribe_replays_exactly_the_missed_events(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    first = Client(server.url, server.token("alice"))
    clients.append(first)
    await first.connect()
    ack = await first.call("subscribe_on_session", {"session_id": session_id})
    await toggle(server, session_id, 3)
    await first.wait_for(lambda: first.offsets(session_id) == [2, 3, 4])
    epoch, last = ack["epoch"], first.offsets(session_id)[-1]
    await first.close()

    await toggle(server, session_id, 5, start=3)  # offsets 5..9 happen while away

    again = Client(server.url, server.token("alice"))
    clients.append(again)
    await again.connect()
    ack = await again.call("subscribe_on_session", {"session_id": session_id, "epoch": epoch, "offset": last})
    assert again.offsets(session_id) == [5, 6, 7, 8, 9]  # all before the ack, in order
    last_id = again.named("session_status")[-1]["id"]
    assert ack == {
        "ok": True,
        "session_id": session_id,
        "epoch": epoch,
        "offset": 9,
        "last_id": last_id,
        "missed": 5,
        "recovered": True,
    }
    assert again.named("session_snapshot") == []
    assert [e["data"]["status"] for e in again.named("session_status")] == [
        "paused",
        "recording",
        "paused",
        "recording",
        "paused",
    ]
    await toggle(server, session_id, 1, start=8)
    await again.wait_for(lambda: again.offsets(session_id)[-1:] == [10])
    assert again.offsets(session_id) == list(range(5, 11))


async def test_up_to_date_resubscribe_replays_nothing(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    client = Client(server.url, server.token("alice"))
    clients.append(client)
    await client.connect()
    ack = await client.call("subscribe_on_session", {"session_id": session_id})
    ack2 = await client.call(
        "subscribe_on_session", {"session_id": session_id, "epoch": ack["epoch"], "offset": ack["offset"]}
    )
    assert ack2["recovered"] is True and ack2["missed"] == 0


async def test_offset_older_than_the_log_gets_a_snapshot(redis_process: Any, redis: Any, tmp_path: Any) -> None:
    srv = await start_server(redis_process.url, tmp_path, stream_maxlen=10)
    client = Client(srv.url, srv.token("alice"))
    try:
        session_id = await srv.create_session("alice")
        epoch = (await srv.services.log.position(session_id)).epoch
        await toggle(srv, session_id, 300)  # the capped log keeps only the newest ~10..100
        oldest = int((await redis.xrange(srv.services.keys.log(session_id), count=1))[0][0].split("-")[0])
        assert oldest > 2
        await client.connect()
        ack = await client.call("subscribe_on_session", {"session_id": session_id, "epoch": epoch, "offset": 1})
        assert ack["ok"] and ack["recovered"] is False and ack["offset"] == 301 and ack["missed"] == 0
        snapshots = client.named("session_snapshot")
        assert len(snapshots) == 1 and snapshots[0]["offset"] == 301 and snapshots[0]["session"]["status"] == "paused"
        assert client.offsets(session_id) == []
    finally:
        await client.close()
        await srv.stop()


async def test_wrong_epoch_gets_a_snapshot(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    client = Client(server.url, server.token("alice"))
    clients.append(client)
    await client.connect()
    ack = await client.call("subscribe_on_session", {"session_id": session_id, "epoch": "not-the-epoch", "offset": 1})
    assert ack["recovered"] is False and len(client.named("session_snapshot")) == 1


async def test_lost_log_starts_a_new_epoch_and_live_members_resync(
    server: ServerUnderTest, clients: list[Client], redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server.bus")
    session_id = await server.create_session("alice")
    client = Client(server.url, server.token("alice"))
    clients.append(client)
    await client.connect()
    old = await client.call("subscribe_on_session", {"session_id": session_id})
    await redis.delete(server.services.keys.log(session_id))  # the log is lost (e.g. restored without it)
    await toggle(server, session_id, 1)
    position = await server.services.log.position(session_id)
    assert position.epoch != old["epoch"] and position.offset == 1
    await client.wait_for(lambda: bool(client.named("session_resync")))
    assert client.named("session_resync")[0] == {"session_id": session_id, "epoch": position.epoch, "offset": 1}
    ack = await client.call(
        "subscribe_on_session", {"session_id": session_id, "epoch": old["epoch"], "offset": old["offset"]}
    )
    assert ack["recovered"] is False and ack["epoch"] == position.epoch
    # The operator hears that Redis lost data (it was an INFO line among the node's routine ones).
    lost = [r for r in caplog.records if r.name == "server.bus" and r.levelno == logging.WARNING]
    assert any(session_id in r.getMessage() and "Redis lost data" in r.getMessage() for r in lost), lost


async def test_a_deleted_session_is_no_data_lost_in_the_log(
    server: ServerUnderTest, clients: list[Client], caplog: pytest.LogCaptureFixture
) -> None:
    session_id = await server.create_session("alice")
    client = Client(server.url, server.token("alice"))
    clients.append(client)
    await client.connect()
    await client.call("subscribe_on_session", {"session_id": session_id})
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    async with aiohttp.ClientSession() as http:
        async with http.delete(f"{server.url}/voicebot/sessions/{session_id}", headers=headers) as response:
            assert response.status == 200, await response.text()
    await client.wait_for(lambda: any(e["data"].get("deleted") for e in client.named("session_update")))
    ack = await client.call("subscribe_on_session", {"session_id": session_id})
    assert ack.get("error") == "session_not_found", ack
    assert not [r for r in caplog.records if r.name == "server.bus" and r.levelno >= logging.WARNING]


async def test_no_gap_and_no_duplicate_when_subscribing_during_a_burst(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id = await server.create_session("alice")
    writer_done = asyncio.Event()

    async def writer() -> None:
        for i in range(200):
            await toggle(server, session_id, 1, start=i)
            await asyncio.sleep(0.001)  # long enough for subscriptions to land mid-burst
        writer_done.set()

    task = asyncio.create_task(writer())
    subscribers = []
    for _ in range(8):
        client = Client(server.url, server.token("alice"))
        clients.append(client)
        await client.connect()
        ack = await client.call("subscribe_on_session", {"session_id": session_id})
        subscribers.append((client, ack["offset"]))
        await asyncio.sleep(0.005)
    await task
    assert any(1 < start < 201 for _, start in subscribers), "no subscription landed mid-burst"
    for client, start in subscribers:
        expected = list(range(start + 1, 202))
        await client.wait_for(lambda c=client, e=expected: c.offsets(session_id) == e)
        assert client.named("session_snapshot")[0]["offset"] == start


async def test_a_redis_emptied_under_a_live_link_resyncs_the_subscribers(
    server: ServerUnderTest, clients: list[Client], redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """FLUSHALL on a running Redis closes no link: subscribers went on showing a session that
    was gone, and nothing was logged (audit "redispressure"). Within the watch's interval they
    are resynced with the empty epoch (the log gone), as after a Redis restarted empty, and their
    resubscribe finds the session gone."""
    caplog.set_level(logging.WARNING, logger="server.data_loss_watch")
    session_id = await server.create_session("alice")
    client = Client(server.url, server.token("alice"))
    clients.append(client)
    await client.connect()
    await client.call("subscribe_on_session", {"session_id": session_id})
    await toggle(server, session_id, 1)  # a write: this node holds the deployment's id secret
    await client.wait_for(lambda: bool(client.offsets(session_id)))
    await redis.flushall()
    await client.wait_for(lambda: bool(client.named("session_resync")))
    assert client.named("session_resync")[0]["epoch"] == "", client.named("session_resync")
    ack = await client.call("subscribe_on_session", {"session_id": session_id})
    assert ack["error"] == "session_not_found", ack
    said = [r.getMessage() for r in caplog.records if "Redis lost its data without a restart" in r.getMessage()]
    assert len(said) == 1, said
    # The next write makes the secret again: nothing more is said.
    await server.create_session("alice")
    assert not await server.services.log.id_key_gone()


async def test_a_flush_is_noticed_by_a_node_after_another_made_a_new_secret(
    server: ServerUnderTest, clients: list[Client], redis: Any, redis_process: Any, tmp_path: Any
) -> None:
    """A node that wrote first after the flush made a new id secret: the others looked for the
    key alone, found one, and never told their subscribers (audit verify39)."""
    other = await start_server(redis_process.url, tmp_path / "other")
    try:
        session_id = await server.create_session("alice")
        client = Client(server.url, server.token("alice"))
        clients.append(client)
        await client.connect()
        await client.call("subscribe_on_session", {"session_id": session_id})
        await toggle(server, session_id, 1)  # this node holds the deployment's id secret
        await client.wait_for(lambda: bool(client.offsets(session_id)))
        await redis.flushall()
        await other.create_session("bob")  # at once: a new secret, before this node's next look
        await client.wait_for(lambda: bool(client.named("session_resync")))
        assert client.named("session_resync")[0]["epoch"] == "", client.named("session_resync")
    finally:
        await other.stop()


async def test_a_flush_is_noticed_by_a_node_that_only_serves_subscribers(
    server: ServerUnderTest, clients: list[Client], redis: Any, redis_process: Any, tmp_path: Any
) -> None:
    """A node that had written no event had read no id secret, and its watch looked for none: its
    subscribers went on showing a session that was gone after a FLUSHALL (audit "tlsredis")."""
    writer = await start_server(redis_process.url, tmp_path / "writer")
    try:
        session_id = await writer.create_session("alice")
        await toggle(writer, session_id, 1)  # the deployment's secret, made by the other node
        client = Client(server.url, server.token("alice"))
        clients.append(client)
        await client.connect()
        await client.call("subscribe_on_session", {"session_id": session_id})  # this node only reads
        await toggle(writer, session_id, 2)
        await client.wait_for(lambda: len(client.offsets(session_id)) >= 1)
        # The watch has looked once since (it reads the secret at its first look).
        await client.wait_for(lambda: server.services.log.id_key_held)
        await redis.flushall()
        await client.wait_for(lambda: bool(client.named("session_resync")))
        assert client.named("session_resync")[0]["epoch"] == "", client.named("session_resync")
    finally:
        await writer.stop()
