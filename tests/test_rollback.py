"""Redis losing its last writes: the rewritten history is noticed and every client told to resync.

What Redis losing writes looks like from outside (an OS crash under ``appendfsync everysec``, a
failover to a lagging replica) is reproduced by DUMPing a session's keys and RESTOREing them
behind the server's back: the log goes back to an older offset of the same epoch.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.conftest import start_server
from tests.helpers import OWNER, Client, RedisProcess, ServerUnderTest
from tests.rollback import Rollback

STATUSES = ["recording", "paused"]


async def toggle(server: ServerUnderTest, session_id: str, count: int) -> None:
    for i in range(count):
        await server.services.voice.set_status(session_id, STATUSES[i % 2], OWNER)


def session_keys(server: ServerUnderTest, session_id: str) -> list[str]:
    keys = server.services.keys
    return [keys.session(session_id), keys.log(session_id), keys.log_meta(session_id)]


async def test_live_subscribers_on_two_nodes_are_told_and_resync_to_what_redis_holds(
    server: ServerUnderTest, clients: list[Client], redis: Any, redis_process: RedisProcess, tmp_path: Path
) -> None:
    other = await start_server(redis_process.url, tmp_path / "node2")
    raw = Redis.from_url(redis_process.url)
    try:
        session_id = await server.create_session("alice")
        first = await server.subscriber(clients, session_id)
        second = await other.subscriber(clients, session_id)
        old_epoch = (await server.services.log.position(session_id)).epoch
        await toggle(server, session_id, 2)  # offsets 2, 3: recording, paused
        lost = Rollback(raw, keys=session_keys(server, session_id))
        await lost.take()
        await toggle(server, session_id, 3)  # offsets 4..6, acknowledged and delivered
        for watcher in (first, second):
            await watcher.wait_for(lambda w=watcher: w.offsets(session_id)[-1:] == [6])

        await lost.restore()  # Redis is back at offset 3 of the same epoch
        await server.services.voice.set_status(session_id, "recording", OWNER)  # offset 4 again, another event

        for watcher in (first, second):
            await watcher.wait_for(lambda w=watcher: bool(w.named("session_resync")))
            [notice] = watcher.named("session_resync")
            assert notice["epoch"] != old_epoch
            # The rewritten offset 4 was never delivered as if it followed 6.
            assert watcher.offsets(session_id) == [2, 3, 4, 5, 6]
            ack = await watcher.call("subscribe_on_session", {"session_id": session_id})
            assert ack["epoch"] == notice["epoch"]
            snapshot = watcher.named("session_snapshot")[-1]
            stored = await server.services.voice.get(session_id)
            assert stored is not None and snapshot["session"]["status"] == stored.status == "recording"
            assert snapshot["offset"] == 4
    finally:
        await raw.aclose()
        for client in clients:  # before its server stops, which waits for open connections
            await client.close()
        await other.stop()


async def test_a_resuming_client_whose_events_were_rewritten_gets_a_snapshot(
    server: ServerUnderTest, clients: list[Client], redis_process: RedisProcess
) -> None:
    raw = Redis.from_url(redis_process.url)
    try:
        session_id = await server.create_session("alice")
        client = await server.subscriber(clients, session_id)
        await toggle(server, session_id, 2)
        lost = Rollback(raw, keys=session_keys(server, session_id))
        await lost.take()  # at offset 3
        await toggle(server, session_id, 3)  # offsets 4..6
        await client.wait_for(lambda: client.offsets(session_id)[-1:] == [6])
        last = [data for name, data in client.events if name == "session_status"][-1]
        await client.close()

        await lost.restore()
        # Redis goes on from offset 3 with other events, past the client's offset 6.
        for status in ("recording", "cutting", "recording", "ready"):
            await server.services.voice.set_status(session_id, status, OWNER)

        again = Client(server.url, server.token("alice"))
        clients.append(again)
        await again.connect()
        resume = {"session_id": session_id, "epoch": last["epoch"], "offset": 6, "last_id": last["id"]}
        ack = await again.call("subscribe_on_session", resume)
        assert ack["recovered"] is False and ack["epoch"] != last["epoch"]
        [snapshot] = again.named("session_snapshot")
        assert snapshot["session"]["status"] == "ready" and snapshot["offset"] == 7
        assert again.offsets(session_id) == []  # no replay of a history that is not the one it saw
    finally:
        await raw.aclose()


async def test_a_client_ahead_of_the_log_gets_a_snapshot_in_a_new_epoch(
    server: ServerUnderTest, clients: list[Client], redis_process: RedisProcess
) -> None:
    raw = Redis.from_url(redis_process.url)
    try:
        session_id = await server.create_session("alice")
        lost = Rollback(raw, keys=session_keys(server, session_id))
        await lost.take()  # at offset 1
        await toggle(server, session_id, 2)
        position = await server.services.log.position(session_id)
        epoch = position.epoch
        await lost.restore()
        client = Client(server.url, server.token("alice"))
        clients.append(client)
        await client.connect()
        # The id of the event it saw at offset 3, which the server issued there: the evidence.
        resume = {"session_id": session_id, "epoch": epoch, "offset": 3, "last_id": position.last_id}
        ack = await client.call("subscribe_on_session", resume)
        assert ack["recovered"] is False and ack["epoch"] != epoch and ack["offset"] == 1
        # The next change numbers on in the new epoch: nobody can mistake it for the lost offset 2.
        await server.services.voice.set_status(session_id, "recording", OWNER)
        assert (await server.services.log.position(session_id)).epoch == ack["epoch"]
    finally:
        await raw.aclose()


async def test_a_node_reconnecting_to_a_redis_that_lost_writes_resyncs_its_room(
    server: ServerUnderTest, clients: list[Client], redis: Any, redis_process: RedisProcess
) -> None:
    raw = Redis.from_url(redis_process.url)
    try:
        session_id = await server.create_session("alice")
        watcher = await server.subscriber(clients, session_id)
        lost = Rollback(raw, keys=session_keys(server, session_id))
        await lost.take()
        await toggle(server, session_id, 3)
        await watcher.wait_for(lambda: watcher.offsets(session_id)[-1:] == [4])
        epoch = (await server.services.log.position(session_id)).epoch
        # A restart of Redis: its data goes back, and every pub/sub link drops.
        await lost.restore()
        assert await redis.client_kill_filter(_type="pubsub") >= 1
        await watcher.wait_for(lambda: bool(watcher.named("session_resync")), timeout=10)
        assert watcher.named("session_resync")[0]["epoch"] != epoch
    finally:
        await raw.aclose()


def one_id_per_offset(watcher: Client, session_id: str) -> dict[tuple[str, int], str]:
    """Every (epoch, offset) the watcher was given, with its id; fails on one given twice."""
    seen: dict[tuple[str, int], str] = {}
    for name, data in watcher.events:
        if name == "session_status" and data.get("session_id") == session_id:
            assert seen.setdefault((data["epoch"], data["offset"]), data["id"]) == data["id"], data
    return seen


async def test_late_messages_of_an_epoch_the_room_left_are_never_delivered(
    server: ServerUnderTest, clients: list[Client], redis: Any, redis_process: RedisProcess
) -> None:
    """A room that started a new epoch (its history was rewritten) has the reset's answer
    straight from Redis, which can come before pub/sub messages of the old epoch published
    ahead of the reset. Those must not take the room back to the old epoch: its members were
    given its offsets already (seen in a cluster failover to a lagging replica)."""
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    old_epoch = (await server.services.log.position(session_id)).epoch
    raw = Redis.from_url(redis_process.url)
    lost = Rollback(raw, keys=session_keys(server, session_id))
    await toggle(server, session_id, 2)  # offsets 2, 3
    await lost.take()
    await toggle(server, session_id, 3)  # offsets 4..6
    await watcher.wait_for(lambda: watcher.offsets(session_id)[-1:] == [6])
    given = {data["offset"]: data for data in watcher.named("session_status")}
    channel = server.services.keys.channel(session_id)

    async def publish_again(offset: int) -> None:  # the offset as a lagging replica hands it out
        await redis.publish(channel, json.dumps({**given[offset], "id": f"replica.{offset}"}))

    try:
        await lost.restore()  # the log is back at offset 3 (a failover to a lagging replica)
    finally:
        await raw.aclose()
    await publish_again(4)  # an offset given with another id, the log behind: the log starts anew
    await watcher.wait_for(lambda: bool(watcher.named("session_resync")), timeout=10)
    for offset in (5, 6):  # published before the reset, arriving after its answer
        await publish_again(offset)
    await server.services.voice.set_status(session_id, "recording", OWNER)  # from paused, restored
    new_epoch = (await server.services.log.position(session_id)).epoch
    await watcher.wait_for(lambda: any(epoch == new_epoch for epoch, _ in one_id_per_offset(watcher, session_id)))

    assert [notice["epoch"] for notice in watcher.named("session_resync")] == [new_epoch] != [old_epoch]
    given_again = one_id_per_offset(watcher, session_id)
    assert sorted(offset for epoch, offset in given_again if epoch == old_epoch) == [2, 3, 4, 5, 6]


async def test_a_stray_event_at_an_offset_the_log_still_holds_is_dropped(
    server: ServerUnderTest, clients: list[Client], redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A cluster master failed over while frozen runs its queued scripts as it wakes: its writes
    are discarded as it rejoins as a replica, but their messages reach the nodes, at offsets the
    new master gave other events. Taken for lost writes, they resynced every room of that master
    (a new epoch for every client, "Redis lost writes" logged) with nothing lost. The log, which
    still holds what the room delivered, decides: the stray is dropped."""
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    await toggle(server, session_id, 3)  # offsets 2..4
    await watcher.wait_for(lambda: watcher.offsets(session_id)[-1:] == [4])
    stray = {**watcher.named("session_status")[-1], "id": "zombie.4", "data": {"status": "cutting"}}
    caplog.set_level(logging.INFO, logger="server.bus")
    await redis.publish(server.services.keys.channel(session_id), json.dumps(stray))
    await server.services.voice.set_status(session_id, "cutting", OWNER)  # offset 5, the real next
    await watcher.wait_for(lambda: watcher.offsets(session_id)[-1:] == [5])
    assert watcher.offsets(session_id) == [2, 3, 4, 5]
    assert watcher.named("session_resync") == []
    assert not [r for r in caplog.records if r.name == "server.bus" and r.levelno >= logging.WARNING]


async def test_a_log_gone_back_to_an_epoch_the_room_left_starts_another(
    server: ServerUnderTest, clients: list[Client], redis_process: RedisProcess
) -> None:
    """Redis loses writes twice: first the room's history (a new epoch starts), then the new
    epoch itself, so the log is back in the epoch the room left and hands out its next
    offsets again. The room must not follow it back: it has the log start yet another epoch."""
    raw = Redis.from_url(redis_process.url)
    try:
        session_id = await server.create_session("alice")
        watcher = await server.subscriber(clients, session_id)
        old_epoch = (await server.services.log.position(session_id)).epoch
        await toggle(server, session_id, 2)  # offsets 2, 3: recording, paused
        lost = Rollback(raw, keys=session_keys(server, session_id))
        await lost.take()  # at offset 3
        await toggle(server, session_id, 2)  # offsets 4, 5
        await watcher.wait_for(lambda: watcher.offsets(session_id)[-1:] == [5])

        await lost.restore()
        await server.services.voice.set_status(session_id, "recording", OWNER)  # offset 4 again
        await watcher.wait_for(lambda: len(watcher.named("session_resync")) == 1, timeout=10)
        await lost.restore()  # the new epoch is lost too: the log is at offset 3 of the old one
        await server.services.voice.set_status(session_id, "recording", OWNER)  # offset 4 a third time
        await watcher.wait_for(lambda: len(watcher.named("session_resync")) == 2, timeout=10)
        await server.services.voice.set_status(session_id, "paused", OWNER)
        last_epoch = (await server.services.log.position(session_id)).epoch
        await watcher.wait_for(lambda: any(epoch == last_epoch for epoch, _ in one_id_per_offset(watcher, session_id)))

        epochs = [notice["epoch"] for notice in watcher.named("session_resync")]
        assert old_epoch not in epochs and len(set(epochs)) == 2 and epochs[-1] == last_epoch
        given = one_id_per_offset(watcher, session_id)
        assert sorted(offset for epoch, offset in given if epoch == old_epoch) == [2, 3, 4, 5]
    finally:
        await raw.aclose()


async def test_a_member_that_joined_at_a_lost_offset_is_told_when_it_is_written_again(
    server: ServerUnderTest, clients: list[Client], redis_process: RedisProcess
) -> None:
    """A room opened at an offset Redis then loses, with nothing delivered since: its members'
    snapshot holds the lost changes. The log growing back past that offset with other events
    must make them resync, not go on from the snapshot with the new history's next events."""
    raw = Redis.from_url(redis_process.url)
    try:
        session_id = await server.create_session("alice")
        await toggle(server, session_id, 2)  # offsets 2, 3
        lost = Rollback(raw, keys=session_keys(server, session_id))
        await lost.take()  # at offset 3
        await toggle(server, session_id, 2)  # offsets 4, 5: acknowledged, then lost
        watcher = await server.subscriber(clients, session_id)  # its snapshot is at offset 5
        [snapshot] = watcher.named("session_snapshot")
        assert snapshot["offset"] == 5
        await lost.restore()  # Redis is back at offset 3 of the same epoch
        for status in ("recording", "paused", "recording"):  # offsets 4, 5, 6 of another history
            await server.services.voice.set_status(session_id, status, OWNER)
        await watcher.wait_for(lambda: bool(watcher.named("session_resync")))
        assert watcher.named("session_resync")[0]["epoch"] != snapshot["epoch"]
        # Nothing of the new history was handed over as if it followed the snapshot.
        assert [e for e in watcher.named("session_status") if e["epoch"] == snapshot["epoch"]] == []
    finally:
        await raw.aclose()
