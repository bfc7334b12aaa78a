"""The revoked devices reach every node from a log each node reads from where it stopped
(handlers/revocation_watch.py): a poll with nothing new reads two fields, not the whole set,
and a node behind a trimmed or replaced log reads the set again. On a Redis Cluster too."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import socketio
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from handlers.connection import Connections
from handlers.revocation_watch import RevocationWatch
from server.identity import token_service
from server.services import build_services, connect_redis
from tests import helpers
from tests.helpers import Client, RedisProcess, ServerUnderTest

pytestmark = pytest.mark.timeout(90)

# Enough revocations that reading them whole is unlike reading what changed.
MANY = 300
# Below the default max_devices (50): open_family signs no earlier device of the user out.
PER_USER = 40


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A redis-server of this test alone: its command counts are the watch's own."""
    process = RedisProcess(tmp_path_factory.mktemp("redis"))
    process.start()
    yield process
    process.stop()


@pytest_asyncio.fixture
async def client(own_redis: RedisProcess) -> AsyncIterator[Redis]:
    made = connect_redis(own_redis.url)
    yield made
    await made.aclose()


def watch_on(redis: Redis, url: str, tmp_path: Path) -> RevocationWatch:
    settings = helpers.test_settings(url, tmp_path)
    services = build_services(settings, redis=redis, tokens=token_service(settings))
    return RevocationWatch(services, Connections(), sio=None, interval_s=1)


async def revoke_many(watch: RevocationWatch, count: int) -> list[str]:
    identities = watch._s.identities
    revoked: list[str] = []
    for i in range(count):
        family_id, _ = await identities.open_family(f"user{i // PER_USER}", label="probe", grant={})
        assert await identities.revoke(f"user{i // PER_USER}", family_id)
        revoked.append(family_id)
    return revoked


def commands_since_reset(sync: SyncRedis) -> dict[str, int]:
    """Calls per command since CONFIG RESETSTAT, without the probe's own."""
    stats = sync.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if name not in ("cmdstat_info", "cmdstat_config|resetstat")
    }


async def test_a_poll_with_nothing_new_does_not_read_the_whole_set(
    own_redis: RedisProcess, client: Redis, tmp_path: Path
) -> None:
    watch = watch_on(client, own_redis.url, tmp_path)
    revoked = await revoke_many(watch, MANY)
    await watch.poll()  # the first: the whole set
    assert watch._s.tokens.revoked_families == frozenset(revoked)
    sync = SyncRedis(port=own_redis.port, decode_responses=True)
    try:
        sync.config_resetstat()
        for _ in range(3):
            await watch.poll()
        # Each poll asked where the log is, and nothing more (before: ZREMRANGEBYSCORE and a
        # ZRANGE of all MANY members, every poll).
        assert commands_since_reset(sync) == {"hmget": 3}
        assert watch._s.tokens.revoked_families == frozenset(revoked)
        # One more revocation: read from the log, that entry alone.
        [late] = await revoke_many(watch, 1)
        sync.config_resetstat()
        await watch.poll()
        assert commands_since_reset(sync) == {"hmget": 1, "xrange": 1}
        assert watch._s.tokens.revoked_families == frozenset([*revoked, late])
        # Past the access tokens' life the revocations are over, here as in Redis.
        watch._s.clock.shift_ms += watch._s.identities.config.access_ttl_s * 1000 + 1
        await watch.poll()
        assert watch._s.tokens.revoked_families == frozenset()
    finally:
        sync.close()


async def test_a_node_behind_a_trimmed_or_replaced_log_reads_the_set_again(
    own_redis: RedisProcess, client: Redis, tmp_path: Path
) -> None:
    watch = watch_on(client, own_redis.url, tmp_path)
    keys = watch._s.keys
    first = await revoke_many(watch, 3)
    await watch.poll()
    assert watch._s.tokens.revoked_families == frozenset(first)
    # Trimmed past this node's place (it was away while many were logged).
    second = await revoke_many(watch, 3)
    await client.xtrim(keys.revoked_log(), maxlen=1, approximate=False)
    await watch.poll()
    assert watch._s.tokens.revoked_families == frozenset([*first, *second])
    between = await revoke_many(watch, 3)
    await watch.poll()
    # A failover to a replica that lacked the last two entries (the head as the replica had
    # it; the promoted master's entry ids come later in time), then two new revocations: they
    # are numbered as the two this node read, and must not be taken for them.
    log_entries = await client.xrange(keys.revoked_log())
    position = watch._position
    assert position is not None and int(log_entries[-1][1]["n"]) == position.seq
    await client.xdel(keys.revoked_log(), log_entries[-1][0], log_entries[-2][0])
    await client.hset(keys.revoked_head(), mapping={"seq": position.seq - 2, "last": log_entries[-3][0]})
    renumbered = await revoke_many(watch, 2)
    assert int(await client.hget(keys.revoked_head(), "seq")) == position.seq
    await watch.poll()
    assert watch._s.tokens.revoked_families >= frozenset(renumbered)
    # The log and its head lost (a Redis that came back without them), then as many new
    # revocations as this node had read: the numbers run again from 1, under a new epoch.
    await client.delete(keys.revoked_log(), keys.revoked_head())
    third = await revoke_many(watch, 8)
    await watch.poll()
    assert watch._s.tokens.revoked_families == frozenset([*first, *second, *between, *renumbered, *third])
    # And every set lost with them (a Redis restored from an older backup, a replica behind): the
    # node forgot what Redis forgot, and let the signed-out devices in again (audit "restore").
    # It keeps the revocations still in force, and applies them again in Redis for every node.
    everything = frozenset([*first, *second, *between, *renumbered, *third])
    await client.delete(
        keys.revoked_log(), keys.revoked_head(), keys.revoked_families(), keys.revoked_families_before_log()
    )
    for family_id in everything:
        await client.hdel(keys.family(family_id), "revoked")  # the records as the backup had them
    fourth = await revoke_many(watch, 1)
    await watch.poll()
    assert watch._s.tokens.revoked_families == everything | frozenset(fourth)
    other = watch_on(client, own_redis.url, tmp_path / "other")  # a node that starts now
    await other.poll()
    assert other._s.tokens.revoked_families == everything | frozenset(fourth)
    assert all([await client.hget(keys.family(family_id), "revoked") == "1" for family_id in everything])


async def test_a_node_of_the_version_before_the_log_sees_the_revocations_too(
    own_redis: RedisProcess, client: Redis, tmp_path: Path
) -> None:
    """During a rolling upgrade the earlier nodes read only the set they knew; new nodes write it
    too (and prune it), and read it with the whole set (what the earlier nodes wrote)."""
    watch = watch_on(client, own_redis.url, tmp_path)
    keys = watch._s.keys
    revoked = await revoke_many(watch, 2)
    assert set(await client.zrange(keys.revoked_families_before_log(), 0, -1)) == set(revoked)
    earlier_node_wrote = "0123456789abcdef01234567"
    await client.zadd(keys.revoked_families_before_log(), {earlier_node_wrote: watch._s.clock.now_ms() + 60_000})
    await watch.poll()
    assert watch._s.tokens.revoked_families == frozenset([*revoked, earlier_node_wrote])


# The cluster and its two nodes: tests/cluster_fixtures.py's, 3 masters without a replica, and
# nodes that read the revocation log every 50 ms.
CLUSTER_REPLICAS = 0
NODE_SETTINGS = {"revocation_poll_s": 0.05}


async def test_a_device_revoked_on_one_node_is_signed_out_on_the_other(nodes: list[ServerUnderTest]) -> None:
    revoking, other = nodes
    identities = revoking.services.identities
    earlier = [await identities.open_family("bob", label="old", grant={}) for _ in range(2)]
    for family_id, _ in earlier:
        await identities.revoke("bob", family_id)
    family_id, _ = await identities.open_family("alice", label="phone", grant={})
    token = other.token("alice", fam=family_id)
    socket = Client(other.url, token)
    await socket.connect()
    try:
        await socket.wait_for(lambda: other.services.tokens.revoked_families >= {f for f, _ in earlier}, timeout=10)
        assert await identities.revoke("alice", family_id)
        await socket.wait_for(lambda: bool(socket.named("signed_out")), timeout=10)
        assert socket.named("signed_out")[0]["error"] == "unauthorized"
        refused = Client(other.url, token)
        try:
            with pytest.raises(socketio.exceptions.ConnectionError):
                await refused.connect()
        finally:
            await refused.close()
    finally:
        await socket.close()
