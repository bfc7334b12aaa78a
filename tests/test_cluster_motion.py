"""A Redis Cluster in motion (issue 24): a busy slot resharded away and back, a master killed and
its replica promoted, with live clients on two nodes. Followers on the node that never writes to
the slot must get every event, once, in order; writers get ``unavailable`` at worst, never
``internal_error``; ``/readyz`` tells a bus that cannot deliver from one that can.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
import socketio

from tests.cluster import RedisCluster
from tests.conftest import start_server
from tests.helpers import Client, ServerUnderTest, free_port, wait_until_ready
from tests.test_processes import ROOT, node_env
from tests.test_processes import node as serve_node

STATUSES = ["recording", "paused"]
# Bounded everywhere: a writer sends at most this many changes, for at most this long.
MAX_WRITES = 2000
MAX_WRITE_S = 60.0
# A writer keeps under the server's per-connection rate (SESSIONHUB_EVENT_RATE_PER_S, 20/s, with
# bursts of 40): one that went faster whenever acks came back quickly was refused
# `rate_limited`, retried at once and was cut as a flood mid-failover (a fresh-clone run).
WRITE_EVERY_S = 1 / 18


@dataclass
class Writer:
    """A recorder toggling its session's status over Socket.IO until stopped, retrying what is
    refused as ``unavailable`` (retryable) and counting every other refusal."""

    client: Client
    session_id: str
    acked: list[int] = field(default_factory=list)
    acked_at: list[float] = field(default_factory=list)  # monotonic time of each ack
    unavailable: int = 0
    refused: list[Any] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ended_s: float | None = None  # how long it wrote, once it has stopped

    async def run(self) -> None:
        started = time.monotonic()
        next_at = started
        i = 0
        while not self.stop.is_set() and i < MAX_WRITES and time.monotonic() - started < MAX_WRITE_S:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at = time.monotonic() + WRITE_EVERY_S
            try:
                ack = await self.client.call(
                    "set_session_status", {"session_id": self.session_id, "status": STATUSES[i % 2]}, timeout=10
                )
            except (TimeoutError, socketio.exceptions.TimeoutError):  # the latter is no TimeoutError
                self.refused.append("no ack within 10 s")
                continue
            if ack.get("ok") is False:
                if ack.get("error") == "unavailable":
                    self.unavailable += 1
                    await asyncio.sleep(0.05)  # a retry's pace, as a client backs off
                else:
                    self.refused.append(ack)
                continue
            if ack["offset"]:  # a retry of a change that was applied (not confirmed) changes nothing
                self.acked.append(int(ack["offset"]))
                self.acked_at.append(time.monotonic())
            i += 1
        self.ended_s = time.monotonic() - started

    def progress(self) -> str:
        """What the writer got so far, for a failure's message."""
        ended = "still writing" if self.ended_s is None else f"stopped after {self.ended_s:.0f} s"
        return f"{len(self.acked)} acked, {self.unavailable} unavailable, refused {self.refused[-3:]}, {ended}"


def delivered(client: Client, session_id: str) -> list[tuple[int, str]]:
    return [
        (data["offset"], data["id"])
        for name, data in client.events
        if name == "session_status" and isinstance(data, dict) and data.get("session_id") == session_id
    ]


async def ready(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as response:
        return response.status


# A load balancer's probe gives up after a while, and counts that as not ready.
PROBE_TIMEOUT_S = 0.5


async def probed(url: str) -> int:
    """/readyz's status as a load balancer's probe sees it: 0 when it did not answer in time (its
    Redis PING waits up to 2 s while the shard fails over, and answered 200 once it was over: on a
    loaded machine, the whole of a 1 s failover went by within such a probe)."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            return await ready(url)
    except TimeoutError:
        return 0


async def wait_ready(url: str, timeout_s: float) -> float:
    started = time.monotonic()
    while await ready(url) != 200:
        assert time.monotonic() - started < timeout_s, "the node did not become ready again"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def follower(
    server: ServerUnderTest, clients: list[Client], session_id: str, *, url: str | None = None
) -> Client:
    """A client subscribed to the session on ``server`` (or on the ``serve`` process at ``url``)."""
    client = Client(url or server.url, server.token("alice"))
    clients.append(client)
    await client.connect()
    ack = await client.call("subscribe_on_session", {"session_id": session_id})
    assert ack["ok"] is True, ack
    return client


async def writer_on(server: ServerUnderTest, clients: list[Client], session_id: str) -> Writer:
    client = Client(server.url, server.token("alice"))
    clients.append(client)
    await client.connect()
    return Writer(client, session_id)


async def test_a_busy_slot_resharded_away_and_back_misses_nothing(
    cluster: RedisCluster, nodes: list[ServerUnderTest], made: list[Client]
) -> None:
    cluster.unhurried()  # no node is killed: none should be marked failing for being slow
    writing, following = nodes
    session_id = await writing.create_session("alice")
    slot = cluster.slot_of(writing.services.keys.log(session_id))
    home = cluster.owner(slot)
    away = next(port for port in cluster.masters() if port != home)
    watchers = [await follower(following, made, session_id), await follower(writing, made, session_id)]
    writer = await writer_on(writing, made, session_id)
    task = asyncio.create_task(writer.run())
    try:
        await watchers[0].wait_for(lambda: len(delivered(watchers[0], session_id)) >= 20, timeout=10)
        epoch = watchers[0].named("session_status")[-1]["epoch"]
        await asyncio.to_thread(cluster.move_slot, slot, away)
        recovered_s = [await _resumption(watchers[0], session_id, epoch, writer)]
        moved_at = len(writer.acked)
        await watchers[0].wait_for(lambda: len(delivered(watchers[0], session_id)) >= moved_at + 20, timeout=10)
        # A new subscriber on the follower-only node, once the slot has moved, is served.
        late = await follower(following, made, session_id)
        await asyncio.to_thread(cluster.move_slot, slot, home)
        recovered_s.append(await _resumption(watchers[0], session_id, epoch, writer))
        moved_back_at = len(writer.acked)
        await watchers[0].wait_for(lambda: len(delivered(watchers[0], session_id)) >= moved_back_at + 20, timeout=10)
    finally:
        writer.stop.set()
        await task
    assert writer.refused == []
    last = writer.acked[-1]
    for watcher in [*watchers, late]:
        await watcher.wait_for(lambda w=watcher: delivered(w, session_id)[-1:][0][0] == last, timeout=10)
    for watcher in watchers:
        offsets = [offset for offset, _ in delivered(watcher, session_id)]
        assert offsets == list(range(2, last + 1))  # every event, once, in order
    late_offsets = [offset for offset, _ in delivered(late, session_id)]
    assert late_offsets == list(range(late_offsets[0], last + 1))
    assert await ready(following.url) == 200 and await ready(writing.url) == 200
    print(
        f"\nreshard away and back: {len(writer.acked)} acked, 0 missed, {writer.unavailable} retried as unavailable; "
        f"the follower-only node got the first event written after each move {recovered_s[0]:.2f} s and "
        f"{recovered_s[1]:.2f} s after the move ended"
    )


async def test_a_master_killed_its_replica_promoted_every_follower_resumes(
    cluster: RedisCluster, nodes: list[ServerUnderTest], made: list[Client], tmp_path: Path
) -> None:
    await _failover_with_a_follower_only_node(cluster, nodes[0], made, tmp_path, fault=cluster.kill)


async def test_a_master_cut_off_its_replica_promoted_every_follower_resumes(
    cluster: RedisCluster, nodes: list[ServerUnderTest], made: list[Client], tmp_path: Path
) -> None:
    """A master that answers nothing and closes nothing (frozen, or cut off by the network)
    fails no read: the followers' links waited on it, and got nothing from its promoted replica
    until it came back (52 s in an audit's partition), while their node said it was ready."""
    try:
        await _failover_with_a_follower_only_node(cluster, nodes[0], made, tmp_path, fault=cluster.freeze)
    finally:
        cluster.thaw(cluster.master_ports[0])  # before the fixtures stop it: a stopped process ignores SIGTERM


async def _failover_with_a_follower_only_node(
    cluster: RedisCluster, writing: ServerUnderTest, made: list[Client], tmp_path: Path, *, fault: Callable[[int], None]
) -> None:
    """``fault`` done to the master with the replica, under a session of its slots."""
    doomed = cluster.master_ports[0]  # the master with the replica
    session_id = await writing.create_session("alice")
    while cluster.owner(cluster.slot_of(writing.services.keys.log(session_id))) != doomed:
        session_id = await writing.create_session("alice")
    # The follower-only node is a `serve` process of its own that sends no command of its own
    # (no in-process worker): nothing but its bus can notice the failover.
    async with serve_node(
        tmp_path / "serve", cluster.url, SESSIONHUB_REDIS_CLUSTER="true", SESSIONHUB_INPROCESS_WORKERS="0"
    ) as following:
        await _failover(cluster, writing, following, made, session_id, doomed, fault=fault)


async def _failover(
    cluster: RedisCluster,
    writing: ServerUnderTest,
    following: str,
    made: list[Client],
    session_id: str,
    doomed: int,
    *,
    fault: Callable[[int], None],
) -> None:
    watchers = [await follower(writing, made, session_id, url=following), await follower(writing, made, session_id)]
    writer = await writer_on(writing, made, session_id)
    task = asyncio.create_task(writer.run())
    try:
        await watchers[0].wait_for(lambda: len(delivered(watchers[0], session_id)) >= 20, timeout=10)
        epoch = watchers[0].named("session_status")[-1]["epoch"]
        killed_at = time.monotonic()
        fault(doomed)
        # Anything above this offset (or in a new epoch) was written after the kill.
        written_before = max(writer.acked) + 1
        replica = cluster.replica_ports[0]
        promoted_s: float | None = None
        resumed_s: dict[int, float] = {}
        not_ready_seen = False
        while len(resumed_s) < len(watchers):
            elapsed = time.monotonic() - killed_at
            assert elapsed < 30, f"followers did not resume: {resumed_s}, promoted after {promoted_s}"
            if promoted_s is None and await asyncio.to_thread(_role, cluster, replica) == "master":
                promoted_s = elapsed
            for index, watcher in enumerate(watchers):
                arrived = _resumed_at(watcher, session_id, epoch, written_before)
                if index not in resumed_s and arrived is not None:
                    # When it arrived, not when this loop looked (a CI run's loop, held up on a
                    # loaded host, saw both followers "resume" 6 s after the first write).
                    resumed_s[index] = arrived - killed_at
            if promoted_s is None:
                not_ready_seen = not_ready_seen or await probed(following) != 200
            await asyncio.sleep(0.02)
        assert promoted_s is not None
        ready_s = await wait_ready(following, 10)
    finally:
        writer.stop.set()
        await task
    assert writer.refused == []  # unavailable (retried) at worst, never internal_error
    last = writer.acked[-1]
    for watcher in watchers:
        await watcher.wait_for(lambda w=watcher: delivered(w, session_id)[-1][0] >= last, timeout=10)
        seen: dict[tuple[str, int], str] = {}
        for name, data in watcher.events:
            if name == "session_status" and data.get("session_id") == session_id:
                key = (data["epoch"], data["offset"])
                # Never an offset it already saw with another id (a failover that lost writes
                # starts a new epoch and a resync instead).
                assert seen.setdefault(key, data["id"]) == data["id"], key
    worst = max(resumed_s.values())
    assert worst <= promoted_s + 5, (promoted_s, resumed_s)  # the failover time plus a few seconds
    # And the first event written after the failover reaches every follower promptly once it is
    # written: the bus moves its channel to the promoted master itself (before: the follower-only
    # node lagged ~1.7 s behind, until redis-py happened to refresh its slot map).
    first_write_s = (
        next(t for o, t in zip(writer.acked, writer.acked_at, strict=True) if o > written_before) - killed_at
    )
    # The lag was the follower-only node's: it is held to the writing node's follower, and the
    # two to a bound that a loop busy beside other work (both followers 1.5 s after the first
    # write, together) stays within.
    assert max(resumed_s.values()) - min(resumed_s.values()) <= 1.0, (first_write_s, resumed_s)
    assert worst - first_write_s <= 3.0, (first_write_s, resumed_s)
    # While the shard had no master, the follower-only node said so (a killed master's links
    # fail at once; a silent one's are found out after LINK_SILENT_S, the failover often done).
    assert not_ready_seen or fault != cluster.kill
    print(
        f"\nfailover: replica promoted after {promoted_s:.1f} s, first write acked after {first_write_s:.1f} s, "
        f"followers resumed after {worst:.1f} s, "
        f"follower-only node ready {ready_s:.1f} s after that, {writer.unavailable} writes retried as unavailable"
    )


def _role(cluster: RedisCluster, port: int) -> str | None:
    try:
        return str(cluster.client(port).info("replication")["role"])
    except Exception:
        return None


def _resumed_at(watcher: Client, session_id: str, epoch: str, written_before: int) -> float | None:
    """When the follower got its first event written after the kill (or was told to resync)."""
    for (name, data), arrived in zip(watcher.events, watcher.arrived_s, strict=True):
        if not isinstance(data, dict) or data.get("session_id") != session_id:
            continue
        if name == "session_resync" or data.get("epoch") != epoch or data.get("offset", 0) > written_before:
            return arrived
    return None


async def test_with_replica_durability_a_failover_loses_no_acked_event(
    cluster: RedisCluster, made: list[Client], tmp_path: Path
) -> None:
    """``SESSIONHUB_DURABILITY=replica`` on a cluster waits on the session's own shard (item 5):
    every change acknowledged before the master is killed is in the promoted replica's log."""
    writing = await start_server(
        cluster.url, tmp_path / "node", redis_cluster=True, durability="replica", durability_timeout_ms=500
    )
    # Only the doomed master has a replica: sessions are made by a node without the wait.
    making = await start_server(cluster.url, tmp_path / "maker", redis_cluster=True)
    making_stopped = False
    try:
        doomed = cluster.master_ports[0]
        keys = writing.services.keys
        session_id = await making.create_session("alice")
        while cluster.owner(cluster.slot_of(keys.log(session_id))) != doomed:
            session_id = await making.create_session("alice")
        await making.stop()
        making_stopped = True
        watcher = await follower(writing, made, session_id)
        writer = await writer_on(writing, made, session_id)
        task = asyncio.create_task(writer.run())
        try:
            await watcher.wait_for(lambda: len(writer.acked) >= 30, timeout=15)
            epoch = watcher.named("session_status")[-1]["epoch"]
            cluster.kill(doomed)
            acked_before_kill = list(writer.acked)
            replica = cluster.replica_ports[0]
            started = time.monotonic()
            while _role(cluster, replica) != "master":
                assert time.monotonic() - started < 20, "the replica was not promoted"
                await asyncio.sleep(0.05)
            # The promoted master has no replica left to confirm to: the killed node comes back
            # as its replica (with one replica per shard, writes wait for that -- see README).
            await asyncio.to_thread(cluster.restart, doomed)
            await watcher.wait_for(lambda: len(writer.acked) >= len(acked_before_kill) + 10, timeout=20)
        finally:
            writer.stop.set()
            await task
        assert writer.refused == []
        promoted = cluster.client(replica)
        meta = promoted.hgetall(keys.log_meta(session_id))
        logged = {int(entry_id.split("-")[0]) for entry_id, _ in promoted.xrange(keys.log(session_id))}
        lost = sorted(set(writer.acked) - logged)
        assert meta["epoch"] == epoch and lost == [], (meta, lost)
        seen: dict[tuple[str, int], str] = {}
        for name, data in watcher.events:
            if name == "session_status" and data.get("session_id") == session_id:
                assert seen.setdefault((data["epoch"], data["offset"]), data["id"]) == data["id"]
        print(f"\nreplica durability: {len(writer.acked)} acked, 0 lost, {writer.unavailable} retried as unavailable")
    finally:
        await writing.stop()
        if not making_stopped:
            await making.stop()


async def _resumption(watcher: Client, session_id: str, epoch: str, writer: Writer) -> float:
    """Seconds until ``watcher`` gets an event written after now (bounded)."""
    started = time.monotonic()
    written_before = max(writer.acked) + 1
    while _resumed_at(watcher, session_id, epoch, written_before) is None:
        assert time.monotonic() - started < 10, "the follower did not resume after the move"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


@pytest.mark.timeout(150)  # its bounds add up past pytest's 60 s on a busy machine
async def test_a_failover_to_a_lagging_replica_never_hands_out_an_offset_twice(
    cluster: RedisCluster, nodes: list[ServerUnderTest], made: list[Client]
) -> None:
    """With ``memory`` durability a lagging replica loses the changes it had not received when
    its master died (the documented loss window). The followers had those offsets already; the
    new master hands the same offsets out again with other ids. No client may be given an offset
    it saw with another id: the bus starts a new epoch and the followers resync (item 5)."""
    writing, following = nodes
    doomed, replica = cluster.master_ports[0], cluster.replica_ports[0]
    session_id = await writing.create_session("alice")
    while cluster.owner(cluster.slot_of(writing.services.keys.log(session_id))) != doomed:
        session_id = await writing.create_session("alice")
    watchers = [await follower(following, made, session_id), await follower(writing, made, session_id)]
    writer = await writer_on(writing, made, session_id)
    task = asyncio.create_task(writer.run())
    try:
        await watchers[0].wait_for(lambda: len(delivered(watchers[0], session_id)) >= 10, timeout=10)
        # The replica has everything so far (the session, its log): on a busy machine its link
        # lagged once by more than these first changes, and the promoted replica then had no
        # session at all -- every later change refused session_not_found, not the loss window
        # this test is about.
        synced = await asyncio.to_thread(cluster.client(doomed).wait, 1, 10_000)
        assert synced >= 1, "the replica did not catch up within 10 s"
        # The replica stops, and its link is cut: what the master takes from now on never
        # reaches it (a stopped process cannot reconnect; the stream already in its socket's
        # buffer it would still apply).
        cluster.processes[replica].send_signal(signal.SIGSTOP)
        lagging_from = len(writer.acked)
        # "slave", Redis's older name for the type: redis-py 8.0 (pyproject's lowest) refuses "replica".
        cluster.client(doomed).client_kill_filter(_type="slave")
        await watchers[0].wait_for(lambda: len(writer.acked) >= lagging_from + 10, timeout=10)
        cluster.kill(doomed)
        lost = writer.acked[lagging_from:]
        cluster.processes[replica].send_signal(signal.SIGCONT)
        started = time.monotonic()
        while _role(cluster, replica) != "master":
            assert time.monotonic() - started < 20, "the replica was not promoted"
            await asyncio.sleep(0.05)
        after = len(writer.acked)
        # Bounds, not waits: after a failover the writer's client finds the new master through
        # its slot map's refresh and retries, which took over 10 s once with two suites side by
        # side (s32-c3).
        for watcher in watchers:
            await watcher.wait_for(lambda w=watcher: any(n == "session_resync" for n, _ in w.events), timeout=30)
        try:
            await watchers[0].wait_for(lambda: len(writer.acked) >= after + 10, timeout=30)
        except AssertionError as exc:  # say what the writer was told meanwhile
            raise AssertionError(f"{exc}; writer: {writer.progress()}") from None
    finally:
        writer.stop.set()
        await task
    assert writer.refused == []
    for watcher in watchers:
        seen: dict[tuple[str, int], str] = {}
        for name, data in watcher.events:
            if name == "session_status" and data.get("session_id") == session_id:
                assert seen.setdefault((data["epoch"], data["offset"]), data["id"]) == data["id"]
    print(
        f"\nlagging failover (memory durability): {len(lost)} acked changes lost, every follower resynced, 0 offsets reused"
    )


async def test_a_durable_write_sent_to_a_demoted_master_is_a_move_not_an_error(cluster: RedisCluster) -> None:
    """A client whose slot map still names a node that has become a replica (a failover the
    map has not caught up with) sends it the script and the WAIT on one connection: the script
    is answered MOVED and the WAIT "cannot be used with replica instances". The MOVED is what
    the caller acts on (the map is read again, the client is told ``unavailable``, retryable);
    the WAIT's error must not replace it with a plain error (``internal_error``)."""
    from redis.asyncio.cluster import ClusterNode
    from redis.asyncio.cluster import RedisCluster as AsyncCluster
    from redis.exceptions import AskError

    from storage.events import EventLog
    from storage.scripts import plain_script

    client = AsyncCluster.from_url(cluster.url)
    replica = ClusterNode("127.0.0.1", cluster.replica_ports[0], server_type="replica")
    try:
        await client.initialize()
        key = "sh:{probe}:session"
        slot = cluster.slot_of(key)
        # The key's slot, as a stale map would have it: on the replica (which answers MOVED).
        while cluster.owner(slot) != cluster.master_ports[0]:
            key = key.replace("{", "{x", 1)
            slot = cluster.slot_of(key)
        client.nodes_manager.slots_cache[slot] = [replica]
        script = plain_script(client, "core/accessed.lua")
        with pytest.raises(AskError):
            await EventLog._run_on_owner(client, script, [key], [1], ("WAIT", 1, 100))
    finally:
        await replica.disconnect()
        await client.aclose()


async def test_a_slot_map_that_names_a_demoted_master_does_not_take_the_subscription(cluster: RedisCluster) -> None:
    """Right after a failover, the map a follower reads again may come from a node that has not
    heard of it yet, and name the demoted master. That node takes an ``SSUBSCRIBE`` (as a
    replica does) and gets the shard's messages only once it replicates from the new master:
    what was published before is lost with no sign (2 of 7 graceful failovers, a probe of stop
    49). The bus must subscribe where the slot's master is."""
    from redis.asyncio.cluster import ClusterNode
    from redis.asyncio.cluster import RedisCluster as AsyncCluster

    from server.channels import Channels

    client = AsyncCluster.from_url(cluster.url)
    replica = ClusterNode("127.0.0.1", cluster.replica_ports[0], server_type="replica")
    channels = Channels(client)
    try:
        await client.initialize()
        channel = "sh:{probe}:changes"
        while cluster.owner(cluster.slot_of(channel)) != cluster.master_ports[0]:
            channel = channel.replace("{", "{x", 1)
        client.nodes_manager.slots_cache[cluster.slot_of(channel)] = [replica]  # the stale view
        await channels.subscribe(channel)
        started = time.monotonic()
        confirmed = False
        while not confirmed:
            assert time.monotonic() - started < 10, "the subscription was never confirmed"
            try:
                message = await channels.get_message(0.05)
            except ConnectionError:  # refused where it was aimed; tried again after a pause
                continue
            confirmed = message is not None and message["type"] == "ssubscribe"

        def subscribers(port: int) -> int:
            return int(cluster.client(port).execute_command("PUBSUB", "SHARDNUMSUB", channel)[1])

        assert (subscribers(cluster.master_ports[0]), subscribers(cluster.replica_ports[0])) == (1, 0)
        cluster.client(cluster.master_ports[0]).execute_command("SPUBLISH", channel, "hello")
        while (message := await channels.get_message(0.05)) is None or message["type"] != "smessage":
            assert time.monotonic() - started < 10, "the message was not delivered"
        assert message["data"] == b"hello"
    finally:
        await channels.aclose()
        await replica.disconnect()
        await client.aclose()


async def test_the_slot_map_is_read_without_waiting_on_a_master_that_answers_nothing(cluster: RedisCluster) -> None:
    """A master cut off answers no ``ROLE`` and is left alone a while; meanwhile the map is read
    again after every refused try. redis-py asks the nodes in a random order, and a reading that
    asked the silent master first waited on it: a follower-only node got the first event after a
    failover 2.2 s after the other node (a CI run). Every reading asks it last."""
    from redis.asyncio.cluster import RedisCluster as AsyncCluster

    from server.channels import Channels

    client = AsyncCluster.from_url(cluster.url)  # no reply timeout: a wait on the silent node is long
    channels = Channels(client)
    silent = cluster.master_ports[0]
    try:
        await client.initialize()
        node = client.get_node("127.0.0.1", silent)
        assert node is not None
        cluster.freeze(silent)
        with pytest.raises(ConnectionError):
            await channels._check_master(node)  # left alone a while from now
        for _ in range(12):  # each asks the silent node first by a chance of 1 in 3 without the fix
            channels._mark_stale()
            started = time.monotonic()
            while not channels._map_read():
                assert time.monotonic() - started < 1.0, "the map's reading waited on the silent master"
                await asyncio.sleep(0.01)
        # And once it is no longer left alone (its pause ran out while the map still named it:
        # 2.7 s of lag in a CI run), it is still asked last.
        channels._unanswered.clear()
        for _ in range(12):
            channels._mark_stale()
            started = time.monotonic()
            while not channels._map_read():
                assert time.monotonic() - started < 1.0, "a reading after the pause waited on the silent master"
                await asyncio.sleep(0.01)
    finally:
        cluster.thaw(silent)
        await channels.aclose()
        await client.aclose()


async def test_serve_started_while_the_shard_of_slot_0_fails_over_comes_up(
    cluster: RedisCluster, tmp_path: Path
) -> None:
    """A cluster client's PING goes to the owner of slot 0: a ``serve`` started while that shard
    fails over got no answer and exited ("cannot reach Redis"). It must come up, say it is not
    ready while the shard has no master, and be ready once it has one. The replica is held
    stopped until the node is up, so that the failover cannot finish before the node starts."""
    doomed, replica = cluster.owner(0), cluster.replica_ports[0]
    assert doomed == cluster.master_ports[0]  # the master with the replica
    cluster.processes[replica].send_signal(signal.SIGSTOP)
    try:
        cluster.kill(doomed)
        port = free_port()
        data_dir = tmp_path / "serve"
        data_dir.mkdir()
        seeds = ",".join(f"redis://127.0.0.1:{p}/0" for p in cluster.master_ports[1:])
        env = node_env(data_dir, seeds, SESSIONHUB_REDIS_CLUSTER="true", SESSIONHUB_INPROCESS_WORKERS="0")
        with (data_dir / "serve.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "server", "serve", "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            try:
                await wait_until_ready(url, proc.poll, path="/healthz")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {(data_dir / 'serve.log').read_text()[-2000:]}") from None
            assert await ready(url) == 503  # up, and not ready: slot 0's shard has no master
        finally:
            cluster.processes[replica].send_signal(signal.SIGCONT)
        await wait_until_ready(url, proc.poll, path="/readyz")
        assert _role(cluster, replica) == "master"
    finally:
        cluster.processes[replica].send_signal(signal.SIGCONT)
        if "proc" in locals() and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 20)


async def test_a_worker_started_while_the_job_queues_shard_fails_over_runs_jobs_once_it_is_back(
    cluster: RedisCluster, tmp_path: Path
) -> None:
    """A worker makes its consumer group as it starts: with the job queue's shard failing over
    then (a ``serve`` started during a failover, which now comes up), that first command failed
    and ended the worker for good, the process running on with no worker. It waits the outage
    out like any other; the job queued after the failover is run."""
    from server.worker import Worker
    from storage.jobs import Job

    doomed, replica = cluster.master_ports[0], cluster.replica_ports[0]
    server = await start_server(cluster.url, tmp_path / "node", redis_cluster=True)
    ran: list[str] = []

    async def probe(_services: object, job: Job) -> dict[str, Any]:
        ran.append(job.job_id)
        return {}

    worker = Worker(
        services=server.services, processors={"probe": probe}, max_attempts=3, backoff_base_ms=1, visibility_ms=60_000
    )
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        await asyncio.to_thread(cluster.move_slot, cluster.slot_of(server.services.keys.jobs()), doomed)
        cluster.processes[replica].send_signal(signal.SIGSTOP)  # no failover before the worker starts
        try:
            cluster.kill(doomed)
            task = asyncio.create_task(worker.run(stop, block_ms=100))
            await asyncio.sleep(0)  # its first command is sent to the dead master
        finally:
            cluster.processes[replica].send_signal(signal.SIGCONT)
        started = time.monotonic()
        while _role(cluster, replica) != "master":
            assert time.monotonic() - started < 20, "the replica was not promoted"
            await asyncio.sleep(0.05)
        job = Job(type="probe", session_id="none", performer_id="alice")
        while True:  # the client finds the new master by itself; until then the queue is unavailable
            try:
                await server.services.jobs.enqueue(job)
                break
            except Exception:
                assert time.monotonic() - started < 30, "the job could not be queued after the failover"
                await asyncio.sleep(0.1)
        while job.job_id not in ran:
            assert not task.done(), f"the worker ended: {task.exception()!r}"
            assert time.monotonic() - started < 30, "the job was not run"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        await server.stop()
