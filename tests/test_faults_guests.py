"""The guest sweeper under a node killed mid-guest and a Redis that lost a guest's visit.

handlers/guest_retention.py: a lease per guest keeps two nodes off one guest, and every step is
safe to repeat after a node died in it. Here a real ``serve`` process is killed (-9) while it
deletes a gone guest's sessions: its lease holds the guest off the other nodes until it runs
out, then another node finishes, leaving nothing of the guest. And a visit that one hash slot
lost (on a Redis Cluster the index of guests and the guest's own keys are in different slots;
a failover to a lagging replica loses one's last second) does not make a guest that came back
within its idle time look gone: its devices' last use still says when it came.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis
from redis.exceptions import BusyLoadingError, ReadOnlyError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from handlers.cleanups import retry_owed
from handlers.guest_retention import LEASE_MS, RETRY_LATER_MS, redis_away
from storage.clock import Clock
from storage.failures import REDIS_AWAY
from tests.helpers import RedisProcess, ServerUnderTest, free_port
from tests.identity.support import ACCESS_TTL_S, Browser
from tests.identity.test_guest_retention import (  # noqa: F401 - the fixtures
    GONE_S,
    IDLE_S,
    gone_for,
    gserver,
    http,
    mentioning,
    owning_guest,
    sweeper,
)
from tests.test_processes import ROOT, _wait_ready, node_env

SESSIONS = 40


async def guest_with_sessions(server: ServerUnderTest, web: aiohttp.ClientSession) -> tuple[str, list[str]]:
    """A guest page that made ``SESSIONS`` voice sessions and a stream: (its id, the sessions)."""
    page = Browser(web, server.url)
    user_id = str((await page.guest()).body["user_id"])
    made: list[str] = []
    for n in range(SESSIONS):
        answer = await page.call("POST", "/voicebot/create_session", json={"session_name": f"n{n}"})
        assert answer.status == 201, answer.body
        made.append(str(answer.body["session_id"]))
    stream = await page.call("POST", "/api/streams", json={"title": "Raid"})
    assert stream.status == 201, stream.body
    return user_id, [*made, str(stream.body["session"]["session_id"])]


async def last_visit_back(redis: Redis, server: ServerUnderTest, user_id: str, ms: int) -> None:
    """The guest's last visit (its place in the index, its devices' last use) ``ms`` earlier.

    The devices first: a node's sweeper (every 50 ms here) that finds the guest idle in the index
    reads its devices' last use before it deletes anything, and one that still said "now" had it
    put the guest back in the index as of now (a visit), so it was never swept (seen under load)."""
    keys = server.services.keys
    score = await redis.zscore(keys.guests_owning(), user_id)
    assert score is not None
    devices: Any = await redis.zrange(keys.user_families(user_id), 0, -1, withscores=True)
    await redis.zadd(keys.user_families(user_id), {device: last_ms - ms for device, last_ms in devices})
    await redis.zadd(keys.guests_owning(), {user_id: score - ms})


async def existing(redis: Redis, server: ServerUnderTest, session_ids: list[str]) -> int:
    async with redis.pipeline(transaction=False) as pipe:
        for session_id in session_ids:
            pipe.exists(server.services.keys.session(session_id))
        return sum(await pipe.execute())


async def test_a_node_killed_mid_guest_holds_it_for_its_lease_then_another_finishes(
    gserver: ServerUnderTest,  # noqa: F811
    http: aiohttp.ClientSession,  # noqa: F811
    redis: Redis,
    redis_process: RedisProcess,
    tmp_path: Path,
) -> None:
    keys = gserver.services.keys
    user_id, sessions = await guest_with_sessions(gserver, http)
    port = free_port()
    (tmp_path / "doomed").mkdir()
    env = node_env(
        tmp_path / "doomed",
        redis_process.url,
        SESSIONHUB_GUEST_IDLE_S=str(IDLE_S),
        SESSIONHUB_GUEST_TOKEN_TTL_S=str(ACCESS_TTL_S),
        SESSIONHUB_CLEANUP_RETRY_S="0.05",  # its sweeper's tick
    )
    doomed = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await _wait_ready(f"http://127.0.0.1:{port}", doomed)
        await last_visit_back(redis, gserver, user_id, GONE_S * 1000)  # gone, by the node's clock too
        started_s = time.monotonic()
        while (left := await existing(redis, gserver, sessions)) == len(sessions):
            assert time.monotonic() - started_s < 15, "the node never swept the guest"
        doomed.send_signal(signal.SIGSTOP)  # mid-guest: some of its sessions deleted, not all
        doomed.send_signal(signal.SIGKILL)
        await asyncio.to_thread(doomed.wait, 10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait(10)
    left = await existing(redis, gserver, sessions)
    assert 0 < left < len(sessions), f"{left} sessions left: the kill was not mid-guest"
    lease = keys.guest_sweep_lease(user_id)
    assert 0 < await redis.pttl(lease) <= LEASE_MS  # held, and running out

    assert (await sweeper(gserver).sweep()).sessions_deleted == 0  # the dead node's lease holds it
    assert await existing(redis, gserver, sessions) == left
    await redis.pexpire(lease, 1)  # its lease runs out
    while await redis.exists(lease):
        await asyncio.sleep(0.005)
    swept = await sweeper(gserver).sweep()
    assert swept.guests_forgotten == 1 and swept.sessions_deleted <= left, swept
    await retry_owed(gserver.services, grace_s=0)  # what a deletion cut off midway still owed
    assert await existing(redis, gserver, sessions) == 0
    assert await redis.zscore(keys.guests_owning(), user_id) is None
    assert await mentioning(redis, [user_id, *sessions]) == []


async def test_a_visit_one_slot_lost_does_not_make_a_guest_that_came_back_look_gone(
    gserver: ServerUnderTest,  # noqa: F811
    http: aiohttp.ClientSession,  # noqa: F811
    redis: Redis,
) -> None:
    keys = gserver.services.keys
    page, ids = await owning_guest(gserver, http)
    first_ms = await redis.zscore(keys.guests_owning(), ids["user"])
    gone_for(gserver, IDLE_S // 2)
    assert (await page.refresh()).status == 200  # it comes back
    came_back_ms = await redis.zscore(keys.guests_owning(), ids["user"])
    assert came_back_ms is not None and first_ms is not None and came_back_ms > first_ms
    # The index's slot lost the visit: it lists the guest by its first visit again.
    await redis.zadd(keys.guests_owning(), {ids["user"]: first_ms})
    gone_for(gserver, GONE_S - IDLE_S // 2 + 10)  # gone, counted from its first visit; not from its return
    swept = await sweeper(gserver).sweep()
    assert (swept.sessions_deleted, swept.guests_forgotten, swept.guests_kept) == (0, 0, 1), swept
    for kind in ("voice", "stream", "listening", "pattern"):
        assert await redis.exists(keys.session(ids[kind])), kind
    listed_ms = await redis.zscore(keys.guests_owning(), ids["user"])
    assert listed_ms is not None and abs(listed_ms - came_back_ms) < 1000  # listed by its return again
    assert (await page.refresh()).status == 200


class IndexEntries:
    """A session's entries in the global and admin indexes (other hash slots than its own)."""

    def __init__(self, redis: Redis, session_id: str) -> None:
        self._redis = redis
        self._session_id = session_id
        self._scores: dict[str, float] = {}
        self._fields: dict[str, str] = {}

    async def take(self) -> None:
        async for key in self._redis.scan_iter(count=1000):
            kind = await self._redis.type(key)
            if kind == "zset" and (score := await self._redis.zscore(key, self._session_id)) is not None:
                self._scores[key] = score
            elif kind == "hash":
                value: Any = await self._redis.hget(key, self._session_id)
                if value is not None:
                    self._fields[key] = str(value)
        assert self._scores and self._fields

    async def put_back(self) -> None:
        for key, score in self._scores.items():
            await self._redis.zadd(key, {self._session_id: score})
        for key, value in self._fields.items():
            await self._redis.hset(key, self._session_id, value)


async def test_a_deletion_cut_off_after_its_script_leaves_no_index_entry_for_good(
    gserver: ServerUnderTest,  # noqa: F811
    http: aiohttp.ClientSession,  # noqa: F811
    redis: Redis,
) -> None:
    """What a node killed between a deletion's script and its index step leaves (the case the
    kill above lands on now and then): its owed note, the session's own keys gone, its entries
    in the global and admin indexes kept. The retry of owed deletions finishes it."""
    keys = gserver.services.keys
    _, ids = await owning_guest(gserver, http)
    record: Any = await redis.hgetall(keys.session(ids["voice"]))
    entries = IndexEntries(redis, ids["voice"])
    await entries.take()
    gone_for(gserver, GONE_S)
    assert (await sweeper(gserver).sweep()).guests_forgotten == 1
    await entries.put_back()  # the index step never ran ...
    await gserver.services.cleanups.note(ids["voice"], record)  # ... nor the settling of its note
    assert await mentioning(redis, [ids["voice"]]) != []
    assert await retry_owed(gserver.services, grace_s=0) == 1
    assert await mentioning(redis, [ids["voice"]]) == []


async def test_a_guest_whose_sweep_met_a_redis_restart_is_swept_at_the_next_pass_not_a_day_later(
    http: aiohttp.ClientSession,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A real redis-server (its own, with an append-only file: it keeps its data over a restart)
    stopped mid-guest and started again before the sweeper's next step. The guest stays due:
    the next pass sweeps it (it used to be put off a day, the blip taken for the guest's fault).
    The restart is timed by wrapping the guest's unlisting step, the only way to land it between
    two of one guest's steps; the failure inside is Redis's own (connection refused)."""
    from tests.conftest import start_server

    restarting = RedisProcess(tmp_path / "redis", appendonly=True)
    restarting.start()
    try:
        node = await start_server(
            restarting.url, tmp_path / "node", clock=Clock(), guest_token_ttl_s=ACCESS_TTL_S, guest_idle_s=IDLE_S
        )
        try:
            await _sweep_through_a_restart(node, http, restarting)
        finally:
            await node.stop()
    finally:
        restarting.stop()


async def _sweep_through_a_restart(node: ServerUnderTest, web: aiohttp.ClientSession, redis: RedisProcess) -> None:
    keys, store = node.services.keys, node.services.redis
    _, ids = await owning_guest(node, web)
    gone_for(node, GONE_S)
    guests = sweeper(node)
    unlist = guests.index.unlist
    met: list[BaseException] = []

    async def unlist_while_redis_restarts(user_id: str, session_ids: list[str]) -> None:
        await asyncio.to_thread(redis.stop)
        try:
            await unlist(user_id, session_ids)
        except Exception as exc:
            met.append(exc)
            raise
        finally:
            await asyncio.to_thread(redis.start)  # back before the sweeper's next step

    guests.index.unlist = unlist_while_redis_restarts  # type: ignore[method-assign]
    try:
        with pytest.raises(REDIS_AWAY):
            await guests.sweep()  # the pass ends at the guest
    finally:
        guests.index.unlist = unlist  # type: ignore[method-assign]
    assert met and isinstance(met[0], REDIS_AWAY), met
    listed_ms = await store.zscore(keys.guests_owning(), ids["user"])
    assert listed_ms is not None and listed_ms < node.services.clock.now_ms() - guests.idle_ms, "put off"
    # Its lease (held still, if the release met the client's broken connection) is let go
    # first thing: the next pass, on the same clock, sweeps it; not a day, nor LEASE_MS, later.
    swept = await guests.sweep()
    assert swept.guests_forgotten == 1, swept
    assert await store.zscore(keys.guests_owning(), ids["user"]) is None
    for kind in ("voice", "stream", "listening"):
        assert not await store.exists(keys.session(ids[kind])), kind
    assert await store.exists(keys.session(ids["pattern"]))


async def test_a_guest_whose_data_redis_refuses_is_put_off_a_day_and_the_pass_goes_on(
    gserver: ServerUnderTest,  # noqa: F811
    http: aiohttp.ClientSession,  # noqa: F811
    redis: Redis,
) -> None:
    """Redis answering an error about the guest's data (here WRONGTYPE: a session key that is no
    hash) is not Redis away: that guest is looked at again in a day, the other guests are swept."""
    keys = gserver.services.keys
    _, broken = await owning_guest(gserver, http)
    _, fine = await owning_guest(gserver, http)
    guests = sweeper(gserver)
    assert (await guests.sweep()).guests_forgotten == 0  # the one-off backfill read the records whole
    await redis.delete(keys.session(broken["voice"]))
    await redis.set(keys.session(broken["voice"]), "not a hash")
    gone_for(gserver, GONE_S)
    swept = await guests.sweep()
    assert swept.guests_forgotten == 1, swept
    assert await redis.zscore(keys.guests_owning(), fine["user"]) is None
    again_ms = await redis.zscore(keys.guests_owning(), broken["user"])
    now_ms = gserver.services.clock.now_ms()
    assert again_ms is not None and abs(again_ms - (now_ms - guests.idle_ms + RETRY_LATER_MS)) < 60_000
    assert not await redis.exists(keys.guest_sweep_lease(broken["user"]))


@pytest.mark.parametrize(
    "exc, away",
    [
        (RedisConnectionError("Connection refused"), True),
        (RedisTimeoutError("Timeout reading from socket"), True),
        (ConnectionResetError(104, "reset"), True),
        (ReadOnlyError("READONLY You can't write against a read only replica."), True),
        (BusyLoadingError("LOADING Redis is loading the dataset in memory"), True),
        (ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), False),
        (ResponseError("ERR user_script:12: Script attempted to access a non local key"), False),
        (PermissionError(13, "an audio file"), False),  # the guest's files, not Redis
        (ValueError("a record this server cannot read"), False),
    ],
)
def test_only_redis_itself_away_ends_the_pass(exc: Exception, away: bool) -> None:
    assert redis_away(exc) is away


async def test_the_start_up_listing_skips_a_record_it_cannot_read_and_the_guests_are_swept(
    gserver: ServerUnderTest,  # noqa: F811
    http: aiohttp.ClientSession,  # noqa: F811
    redis: Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The one-time listing of the guests that owned sessions before the index of guests
    (GuestIndex.backfill) reads every session record of the global index. A session key of the
    wrong type (a string) and a record it cannot parse (created_at 'yesterday') among good ones:
    each is logged (once, its cause's repeats counted) and skipped, the listing goes on to the
    end, and the older guests are swept. It used to raise at the first, at every pass, for good:
    no guest was ever swept."""
    keys = gserver.services.keys
    _, first = await owning_guest(gserver, http)
    _, wrong_type = await owning_guest(gserver, http)
    _, unparseable = await owning_guest(gserver, http)
    _, last = await owning_guest(gserver, http)
    for ids in (first, wrong_type, unparseable, last):  # as the version before the index left them
        await redis.zrem(keys.guests_owning(), ids["user"])
        await redis.persist(keys.user_profile(ids["user"]))
    await redis.delete(keys.session(wrong_type["voice"]))
    await redis.set(keys.session(wrong_type["voice"]), "not a hash")
    await redis.hset(keys.session(unparseable["stream"]), "created_at", "yesterday")
    gone_for(gserver, GONE_S)
    guests = sweeper(gserver)
    with caplog.at_level("ERROR", logger="handlers.guest_retention"):
        ticks = [await guests.sweep() for _ in range(3)]
    assert await redis.get(keys.guests_backfill()) == "done"
    assert sum(t.guests_forgotten for t in ticks) >= 2, ticks
    for ids in (first, last):
        assert await redis.zscore(keys.guests_owning(), ids["user"]) is None
        assert not await redis.exists(keys.user_profile(ids["user"]))
        for kind in ("voice", "stream", "listening"):
            assert not await redis.exists(keys.session(ids[kind])), kind
    # The guests of the bad records were listed by their other sessions, and swept as far as
    # their data lets them: the unparseable one whole, the wrong-typed one put off a day.
    assert not await redis.exists(keys.user_profile(unparseable["user"]))
    assert await redis.zscore(keys.guests_owning(), wrong_type["user"]) is not None
    skipped = [r for r in caplog.records if "could not be read" in r.getMessage()]
    assert len(skipped) == 2, [r.getMessage() for r in skipped]  # one line each, not one per pass
    assert any(wrong_type["voice"] in r.getMessage() for r in skipped)
    assert any(unparseable["stream"] in r.getMessage() for r in skipped)


async def test_the_start_up_listing_ends_the_pass_when_redis_is_away_and_resumes_where_it_was(
    gserver: ServerUnderTest,  # noqa: F811
    http: aiohttp.ClientSession,  # noqa: F811
    redis: Redis,
) -> None:
    """Redis away mid-listing is not a bad record: the pass ends (nothing skipped), and the next
    lists the guest from where the listing was."""
    keys = gserver.services.keys
    _, old = await owning_guest(gserver, http)
    await redis.zrem(keys.guests_owning(), old["user"])
    await redis.persist(keys.user_profile(old["user"]))
    gone_for(gserver, GONE_S)
    guests = sweeper(gserver)
    list_owner = guests.index._list_owner

    async def redis_gone(session_id: str, kinds: frozenset[str]) -> None:
        raise RedisConnectionError("Connection refused")

    guests.index._list_owner = redis_gone  # type: ignore[method-assign]
    try:
        with pytest.raises(RedisConnectionError):
            await guests.sweep()
    finally:
        guests.index._list_owner = list_owner  # type: ignore[method-assign]
    assert await redis.get(keys.guests_backfill()) is None  # not skipped past
    swept = await guests.sweep()
    assert swept.guests_forgotten == 1, swept
    assert not await redis.exists(keys.session(old["voice"]))
