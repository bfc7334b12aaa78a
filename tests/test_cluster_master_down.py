"""With one master of a Redis Cluster down, the other shards' writes go on, scripts not yet
loaded there included.

redis-py's way to load a script Redis lacks is ``SCRIPT LOAD``, which a cluster client sends to
every primary: with any one of them down (killed, until its replica takes over; and a promoted
replica holds no scripts, they are not replicated) every write whose script a shard had not run
yet failed on the healthy shards too, ``unavailable``. The give-back of an Idempotency-Key was
one: it failed silently and resends were answered 409 "still running" until the claim ran out
(audit "killmaster"). The script's body is now sent to the one shard that lacks it.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import aiohttp
import pytest

from storage.idempotency import IdempotentAnswers
from storage.ratelimit import UNCOUNTED
from tests.admin.test_http import admin_token
from tests.cluster import RedisCluster
from tests.conftest import start_server
from tests.helpers import Client, ServerUnderTest
from tests.patterns.test_http import full_state
from tests.test_metrics import scrape, value

pytestmark = pytest.mark.timeout(120)

# No replica: the killed master's slots stay down, the others' go on serving (below).
CLUSTER_REPLICAS = 0


async def test_a_script_new_to_a_healthy_shard_runs_while_another_master_is_down(
    cluster: RedisCluster, tmp_path: Path
) -> None:
    for port in cluster.master_ports:  # the healthy shards keep serving their own slots
        cluster.client(port).config_set("cluster-require-full-coverage", "no")
    server = await start_server(cluster.url, tmp_path, redis_cluster=True)
    try:
        answers = IdempotentAnswers(server.services.redis, server.services.keys, max_answers=10)  # by script
        key = f"k-{uuid.uuid4()}"
        claim_key = server.services.keys.idempotent_answer("test", "alice", key)
        first = cluster.master_ports[0]
        slot = int(cluster.client(first).execute_command("CLUSTER", "KEYSLOT", claim_key))
        owner = cluster.owner_seen_by(first, slot)
        assert owner is not None
        cluster.kill(next(port for port in cluster.master_ports if port != owner))
        shas = (answers._claim.sha, answers._release.sha)
        assert cluster.client(owner).execute_command("SCRIPT", "EXISTS", *shas) == [0, 0]
        # The claim's and the give-back's first runs on the owner's shard.
        assert await answers.claim("test", "alice", key) is None
        await answers.release("test", "alice", key)
        assert await answers.claim("test", "alice", key) is None  # given back: a resend runs at once
        # Each is loaded where it ran, for the EVALSHA of the next call.
        assert cluster.client(owner).execute_command("SCRIPT", "EXISTS", *shas) == [1, 1]
    finally:
        await server.stop()


async def _pattern_on(
    server: ServerUnderTest, cluster: RedisCluster, http: aiohttp.ClientSession, shard: int, *, on: bool
) -> str:
    """A new pattern session whose log is (``on``) or is not on ``shard``'s master."""
    for _ in range(60):  # a third of new sessions land on each of the three shards
        async with http.post(f"{server.url}/api/sessions", json={}) as made:
            assert made.status == 201, await made.text()
            session_id = str((await made.json())["id"])
        if (cluster.owner(cluster.slot_of(server.services.keys.log(session_id))) == shard) == on:
            return session_id
    raise AssertionError("60 sessions and none where wanted")


async def _save(server: ServerUnderTest, http: aiohttp.ClientSession, session_id: str) -> int:
    async with http.put(f"{server.url}/api/sessions/{session_id}", json={"state": full_state()}) as saved:
        return saved.status


async def test_a_shard_without_a_master_leaves_the_other_shards_writing_events_after_the_bus_is_back(
    cluster: RedisCluster, tmp_path: Path
) -> None:
    """The bus's link to the dead shard drops and comes back (its other links read on): it then
    forgot the deployment's event-id secret, and every event write on every shard read it again
    from the shard that holds it -- this one, without a master -- and was refused ``unavailable``
    until a failover ended (audit "frozenmaster"). The secret is kept, and looked at instead."""
    for port in cluster.master_ports:  # the healthy shards keep serving their own slots
        cluster.client(port).config_set("cluster-require-full-coverage", "no")
    server = await start_server(cluster.url, tmp_path, redis_cluster=True, patterns_creates_per_min=100)
    follower = Client(server.url, server.token("alice"))
    try:
        victim = cluster.owner(cluster.slot_of(server.services.keys.log_id_key()))
        async with aiohttp.ClientSession() as http:
            there = await _pattern_on(server, cluster, http, victim, on=True)
            elsewhere = await _pattern_on(server, cluster, http, victim, on=False)
            await follower.connect()  # the bus holds a link to the victim's shard
            await follower.call("subscribe_on_session", {"session_id": there})
            assert await _save(server, http, elsewhere) == 200  # the secret is read
            reconnects = value(await scrape(server), "sessionhub_bus_reconnects_total")

            cluster.kill(victim)

            async def bus_back() -> bool:
                return value(await scrape(server), "sessionhub_bus_reconnects_total") > reconnects

            for _ in range(200):  # bounded: the link's loss and return take about a second
                if await bus_back():
                    break
                await asyncio.sleep(0.1)
            assert await bus_back(), "the bus never lost and regained a link"
            assert await _save(server, http, elsewhere) == 200
            assert await _save(server, http, elsewhere) == 200
    finally:
        await follower.close()
        await server.stop()


async def test_recording_starts_and_plays_go_on_while_the_shard_of_their_sweep_set_has_no_master(
    cluster: RedisCluster, tmp_path: Path
) -> None:
    """A recording start, and a listening play, first put their session in a sweep set: one key,
    on one shard. With that shard's master down, every recorder and every player on every shard
    was refused ``unavailable`` until its failover ended (audit "frozenmaster"). They go ahead,
    and the entry is written by the node's next sweep."""
    for port in cluster.master_ports:
        cluster.client(port).config_set("cluster-require-full-coverage", "no")
    server = await start_server(cluster.url, tmp_path, redis_cluster=True, creates_per_min=100)
    keys = server.services.keys
    clients: list[Client] = []
    try:
        # Both sets on one shard when they are (a third of the time), the voice set's otherwise.
        victim = cluster.owner(cluster.slot_of(keys.voice_recording_due()))
        both = cluster.owner(cluster.slot_of(keys.listening_due())) == victim
        elsewhere = lambda key: cluster.owner(cluster.slot_of(key)) != victim  # noqa: E731

        session_id = ""
        for _ in range(60):
            session_id = await server.create_session("alice")
            if elsewhere(keys.session(session_id)):
                break
        assert elsewhere(keys.session(session_id))
        recorder = Client(server.url, server.token("alice"))
        clients.append(recorder)
        await recorder.connect()
        for status in ("recording", "paused"):  # events written: the id secret is read
            changed = await recorder.call("set_session_status", {"session_id": session_id, "status": status})
            assert changed.get("ok") is True, changed

        history = ""
        for user in (f"listener-{n}" for n in range(60)):
            player = Client(server.url, server.token(user))
            clients.append(player)
            await player.connect()
            history = (await player.call("listening_history", {}))["session_id"]
            if elsewhere(keys.session(history)):
                break
        assert elsewhere(keys.session(history))

        cluster.kill(victim)

        started = await recorder.call("set_session_status", {"session_id": session_id, "status": "recording"})
        assert started.get("ok") is True, started
        if both:
            report = {"session_id": history, "item_id": "song", "status": "playing", "device_id": "d"}
            played = await player.call("listening_report", report)
            assert played.get("ok") is True and played["action"] == "started", played
    finally:
        for client in clients:
            await client.close()
        await server.stop()


async def test_a_rate_counter_whose_shard_has_no_master_lets_its_requests_pass_uncounted(
    cluster: RedisCluster, tmp_path: Path
) -> None:
    """A counter lives on the shard its key hashes to: with that shard's master down, every
    request it counted -- an address's pattern saves, whichever sessions they went to -- was
    refused ``unavailable`` (audit "frozenmaster"). It counts nothing and lets them through."""
    for port in cluster.master_ports:
        cluster.client(port).config_set("cluster-require-full-coverage", "no")
    server = await start_server(cluster.url, tmp_path, redis_cluster=True)
    try:
        limiter = server.services.limiter
        victim = cluster.master_ports[1]
        on_victim = (f"203.0.113.{n}" for n in range(256))
        subject = next(
            s for s in on_victim if cluster.owner(cluster.slot_of(limiter.counter_key("t", s, window_s=60))) == victim
        )
        assert await limiter.wait_s("t", subject, limit=1, window_s=60) == 0  # counted: one of one
        assert await limiter.wait_s("t", subject, limit=1, window_s=60) > 0  # past the limit
        cluster.kill(victim)
        assert await limiter.wait_s("t", subject, limit=1, window_s=60) == 0
        taken = await limiter.take("t", subject, limit=1, window_s=60)
        assert taken is UNCOUNTED
        await limiter.give_back(taken)  # nothing to give back, and no error
    finally:
        await server.stop()


async def test_the_alert_of_a_master_that_does_not_answer_names_it(cluster: RedisCluster, tmp_path: Path) -> None:
    """``redis_unreachable`` said "Redis did not answer INFO memory", leaving the operator to
    find which of the masters it was (audit "frozenmaster")."""
    for port in cluster.master_ports:
        cluster.client(port).config_set("cluster-require-full-coverage", "no")
    server = await start_server(cluster.url, tmp_path, redis_cluster=True)
    try:
        victim = cluster.master_ports[2]
        cluster.kill(victim)
        headers = {"Authorization": f"Bearer {admin_token(server)}"}
        async with aiohttp.ClientSession() as http, http.get(f"{server.url}/admin/alerts", headers=headers) as r:
            assert r.status == 200, await r.text()
            alerts = (await r.json())["alerts"]
        unreachable = [alert for alert in alerts if alert["alert"] == "redis_unreachable"]
        assert len(unreachable) == 1, alerts
        assert unreachable[0]["primaries"] == [f"127.0.0.1:{victim}"], unreachable
        assert f"127.0.0.1:{victim}" in unreachable[0]["message"]
    finally:
        await server.stop()
