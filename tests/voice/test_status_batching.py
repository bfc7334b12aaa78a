"""Status changes of many sessions in one loop turn: one round trip, in order, once (issue 26).

The script calls that handlers issue during one loop turn leave on the lean link in one write,
so Redis reads them in one go and answers them in order (storage/lean_redis.py). These tests
pin that for the voice status script, and what happens to such a batch when Redis has lost
its scripts (NOSCRIPT: each call runs once, in the order issued, without a SCRIPT LOAD per
call) or when the connection is killed midway (no acknowledged change lost, none applied twice).
Against a real redis-server: ``INFO stats`` counts the reads it does, ``INFO commandstats`` the
commands it runs.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from protocol.errors import CodedError
from protocol.events import SESSION_STATUS
from storage.clock import Clock
from storage.events import EventLog
from storage.keys import Keys
from storage.lean_redis import CLIENT_NAME, LeanRedis
from storage.voice.recording import RecordingLeases
from storage.voice.repository import StatusChange, VoiceSessions
from tests.helpers import RedisProcess
from tests.voice.test_status_cost import OWNER, command_calls, voice_on

SESSIONS = 20
ORDER = ("recording", "paused", "recording", "paused")


async def reads_processed(plain: Redis) -> int:
    return int((await plain.info("stats"))["total_reads_processed"])


async def created(voice: VoiceSessions, count: int) -> list[str]:
    return [(await voice.create(owner_id="alice", telegram_user_id="", name=f"s{i}")).id for i in range(count)]


async def logged(redis: Redis, session_id: str) -> list[dict[str, Any]]:
    """The session's status events, in log order."""
    entries = await redis.xrange(Keys("sh").log(session_id))
    events = [json.loads(fields["e"]) for _, fields in entries]
    return [e for e in events if e["type"] == SESSION_STATUS]


async def test_changes_of_many_sessions_in_one_loop_turn_reach_redis_in_one_read(
    redis: Redis, redis_process: RedisProcess
) -> None:
    voice = voice_on(redis)
    ids = await created(voice, SESSIONS)
    await voice.set_status(ids[0], "recording", OWNER)  # the script is loaded, the link open
    plain = Redis.from_url(redis_process.url, decode_responses=True)
    try:
        before_calls = await command_calls(plain)
        before_reads = await reads_processed(plain)
        statuses = ["paused", *["recording"] * (SESSIONS - 1)]
        changes = await asyncio.gather(*(voice.set_status(i, s, OWNER) for i, s in zip(ids, statuses, strict=True)))
        after_reads = await reads_processed(plain)
        after_calls = await command_calls(plain)
    finally:
        await plain.aclose()
    assert all(c.offset > 0 for c in changes)
    assert after_calls["evalsha"] - before_calls["evalsha"] == SESSIONS  # one call each, none repeated
    assert after_reads - before_reads <= 2  # the batch in one read, and the second INFO itself


async def test_a_batch_keeps_each_sessions_order(redis: Redis) -> None:
    voice = voice_on(redis)
    ids = await created(voice, 5)
    # Every session's four changes issued in one turn: each is only valid after the one before.
    changes = await asyncio.gather(*(voice.set_status(i, status, OWNER) for status in ORDER for i in ids))
    assert all(c.offset > 0 for c in changes)
    for session_id in ids:
        events = await logged(redis, session_id)
        assert [e["data"]["status"] for e in events] == list(ORDER)
        assert [e["offset"] for e in events] == sorted(e["offset"] for e in events)


async def test_a_batch_that_finds_no_script_runs_each_call_once_in_order_without_reloads(redis: Redis) -> None:
    voice = voice_on(redis)
    ids = await created(voice, 5)
    await voice.set_status(ids[0], "recording", OWNER)
    await voice.set_status(ids[0], "paused", OWNER)
    await redis.script_flush()  # what a restarted or failed-over Redis looks like to the link
    before = await command_calls(redis)
    changes = await asyncio.gather(*(voice.set_status(i, status, OWNER) for status in ORDER for i in ids))
    after = await command_calls(redis)
    assert all(c.offset > 0 for c in changes)
    ran = {name: calls - before.get(name, 0) for name, calls in after.items() if calls != before.get(name, 0)}
    # Every call found no script; the first EVAL loaded it for the retries behind it. redis-py's
    # own reload would have sent one SCRIPT LOAD per call over its pool.
    assert ran.get("script|load", 0) == 0
    assert ran.get("evalsha", 0) + ran.get("eval", 0) == 2 * len(changes)
    for session_id in ids:
        statuses = [e["data"]["status"] for e in await logged(redis, session_id)]
        assert statuses[-4:] == list(ORDER)
    assert len(await logged(redis, ids[0])) == 6  # two before the flush, four after


async def test_a_connection_killed_under_a_batch_loses_no_acknowledged_change_and_repeats_none(
    redis: Redis, redis_process: RedisProcess
) -> None:
    assert isinstance(redis, LeanRedis)
    voice = voice_on(redis)
    warm, *ids = await created(voice, 51)
    await voice.set_status(warm, "recording", OWNER)  # loaded, connected
    plain = Redis.from_url(redis_process.url, decode_responses=True)
    try:
        (lean,) = [c for c in await plain.client_list() if c.get("name") == CLIENT_NAME]
        calls = [asyncio.ensure_future(voice.set_status(i, "recording", OWNER)) for i in ids]
        await asyncio.sleep(0)  # the batch is queued for its write
        killed = await plain.execute_command("CLIENT", "KILL", "ID", lean["id"])  # while it is answered
        assert killed in (1, True)
        results = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        await plain.aclose()
    acknowledged = [(i, r) for i, r in zip(ids, results, strict=True) if isinstance(r, StatusChange)]
    failed = [r for r in results if not isinstance(r, StatusChange)]
    assert all(isinstance(r, RedisConnectionError | CodedError) for r in failed), failed
    for session_id, change in acknowledged:
        events = await logged(redis, session_id)
        # The acknowledged change is in the log, at the offset its ack named, once.
        assert [e["offset"] for e in events if e["data"]["status"] == "recording"] == [change.offset]
    for session_id in ids:
        events = await logged(redis, session_id)
        assert len({e["id"] for e in events}) == len(events)  # nothing applied twice
        assert sum(e["data"]["status"] == "recording" for e in events) <= 1
    # and the link serves the next call on a new connection
    assert (await voice.set_status(warm, "paused", OWNER)).offset > 0


def leases_on(redis: Redis) -> RecordingLeases:
    keys, clock = Keys("sh"), Clock()
    log = EventLog(redis=redis, keys=keys, clock=clock, maxlen=1000)
    return RecordingLeases(redis=redis, keys=keys, log=log, clock=clock, lease_ms=6000)


async def test_a_recordings_sweep_entry_leaves_with_its_change_in_one_read(
    redis: Redis, redis_process: RedisProcess
) -> None:
    """The recording's sweep entry (a ZADD in another slot) and the status change go over the
    lean link in one write, the ZADD first: one read in Redis, one round trip (two before)."""
    voice, leases = voice_on(redis), leases_on(redis)
    (session_id,) = await created(voice, 1)
    with pytest.raises(CodedError):  # refused (ready -> paused): loads the script, opens the link
        await voice.set_status(session_id, "paused", OWNER)
    plain = Redis.from_url(redis_process.url, decode_responses=True)
    try:
        before_calls = await command_calls(plain)
        before_reads = await reads_processed(plain)
        change = await voice.set_status(
            session_id, "recording", OWNER, holder="h", lease_ms=6000, ahead=leases.due_entry(session_id)
        )
        after_reads = await reads_processed(plain)
        after_calls = await command_calls(plain)
    finally:
        await plain.aclose()
    assert change.offset > 0
    assert after_calls["zadd"] - before_calls.get("zadd", 0) == 1
    assert after_calls["evalsha"] - before_calls["evalsha"] == 1
    assert after_reads - before_reads <= 2  # the pair in one read, and the second INFO itself
    assert await redis.zscore(Keys("sh").voice_recording_due(), session_id) is not None
    assert await redis.get(Keys("sh").voice_recording_lease(session_id)) == "h"


async def test_a_failed_sweep_entry_is_raised_after_the_change_it_went_ahead_of(redis: Redis) -> None:
    voice, leases = voice_on(redis), leases_on(redis)
    (session_id,) = await created(voice, 1)
    await redis.set(Keys("sh").voice_recording_due(), "not a sorted set")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await voice.set_status(
            session_id, "recording", OWNER, holder="h", lease_ms=6000, ahead=leases.due_entry(session_id)
        )
    # Redis ran the pair in order: the ZADD failed, the change behind it was made (as when the
    # two were separate calls, a failure reaches the caller, whose retry is a no-op change)
    assert (await voice.get(session_id)).status == "recording"  # type: ignore[union-attr]
    retried = await voice.set_status(session_id, "recording", OWNER, holder="h", lease_ms=6000)
    assert retried.offset == 0


async def test_without_a_lean_link_the_sweep_entry_is_awaited_first(redis: Redis, redis_process: RedisProcess) -> None:
    plain = Redis.from_url(redis_process.url, decode_responses=True)  # redis-py's pool only (flushed by ``redis``)
    try:
        voice, leases = voice_on(plain), leases_on(plain)
        (session_id,) = await created(voice, 1)
        change = await voice.set_status(
            session_id, "recording", OWNER, holder="h", lease_ms=6000, ahead=leases.due_entry(session_id)
        )
        assert change.offset > 0
        assert await plain.zscore(Keys("sh").voice_recording_due(), session_id) is not None
    finally:
        await plain.aclose()


async def test_the_sweeper_ends_and_settles_its_claimed_entries_together(
    redis: Redis, redis_process: RedisProcess
) -> None:
    """Every recording leaves a sweep entry; a recording paused by hand leaves it to come due, so
    at a steady rate the sweeper looks at one entry per recording. The entries of one claim are
    ended together and settled together: three round trips for the claim, not two per entry."""
    voice, leases = voice_on(redis), leases_on(redis)
    keys = Keys("sh")
    ids = await created(voice, SESSIONS)
    gone, by_hand = ids[:5], ids[5:]
    for session_id in ids:
        await voice.set_status(session_id, "recording", OWNER, holder="h", lease_ms=6000)
    for session_id in by_hand:
        await voice.set_status(session_id, "paused", OWNER, holder="h", lease_ms=6000)  # ends the lease
    await redis.delete(*(keys.voice_recording_lease(s) for s in gone))  # their node died: nobody renewed
    due_key = keys.voice_recording_due()
    await redis.zadd(due_key, {"warm": 1})
    assert await leases.sweep_due(limit=100) == (1, 0)  # the scripts are loaded, the link open
    await redis.zadd(due_key, {session_id: 1 for session_id in ids})  # long due
    plain = Redis.from_url(redis_process.url, decode_responses=True)
    try:
        before_reads = await reads_processed(plain)
        claimed, paused = await leases.sweep_due(limit=100)
        after_reads = await reads_processed(plain)
    finally:
        await plain.aclose()
    assert (claimed, paused) == (SESSIONS, len(gone))
    assert after_reads - before_reads <= 4  # claim, ends, settles, and the second INFO itself (41 one by one)
    assert await redis.zcard(due_key) == 0  # nothing holds a lease: every entry is settled away
    for session_id in ids:
        assert (await voice.get(session_id)).status == "paused"  # type: ignore[union-attr]
        events = await logged(redis, session_id)
        reasons = [e["data"].get("reason") for e in events if e["data"]["status"] == "paused"]
        assert reasons == (["recorder_gone"] if session_id in gone else [None])


async def test_a_sweep_entry_whose_lease_is_held_is_looked_at_again_when_it_would_run_out(redis: Redis) -> None:
    voice, leases = voice_on(redis), leases_on(redis)
    keys = Keys("sh")
    held, gone = await created(voice, 2)
    for session_id in (held, gone):
        await voice.set_status(session_id, "recording", OWNER, holder="h", lease_ms=6000)
    await redis.delete(keys.voice_recording_lease(gone))
    await redis.zadd(keys.voice_recording_due(), {held: 1, gone: 1})
    assert await leases.sweep_due(limit=100) == (2, 1)
    score = await redis.zscore(keys.voice_recording_due(), held)
    assert score is not None and score > Clock().now_ms() + 4000  # looked at again when the lease would run out
    assert (await voice.get(held)).status == "recording"  # type: ignore[union-attr]
    assert await redis.zscore(keys.voice_recording_due(), gone) is None
