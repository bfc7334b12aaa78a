"""What a status change costs Redis: the commands its script runs (issue 26).

Every command a script runs holds Redis (every session on it) for about a microsecond and
this runs once per committed status event, so the count is pinned: one read and one write of
the session, one read and one write of the log's metadata, the XADD (NOMKSTREAM: it is the
log's existence check too) and the PUBLISH. Counted with INFO commandstats, which counts commands run inside a
script too.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from redis.asyncio import Redis

from protocol.errors import CodedError, ErrorCode

from storage.clock import Clock
from storage.events import EventLog
from storage.keys import Keys
from storage.scripts import Scripts, source
from storage.sessions import SessionDirectory
from storage.store import Store
from storage.voice.repository import Performer, VoiceSessions
from tests.helpers import Client, ServerUnderTest

OWNER = Performer(user_id="alice", read_scope="own", may_update=True)


async def sealed(redis: Redis, session_id: str, epoch: str, offset: int, event_id: str) -> bool:
    """True when ``event_id`` carries the seal of ``(session_id, epoch, offset)`` (storage/events.py)."""
    secret = await redis.get(Keys("sh").log_id_key())
    stem, _, seal = event_id.rpartition(".")
    expected = hashlib.sha1(f"{secret}|{session_id}|{epoch}|{offset}".encode()).hexdigest()[:16]
    return bool(secret) and stem.count(".") == 1 and seal == expected


def voice_on(redis: Redis) -> VoiceSessions:
    keys, clock = Keys("sh"), Clock()
    log = EventLog(redis=redis, keys=keys, clock=clock, maxlen=1000)
    sessions = SessionDirectory(redis=redis, keys=keys, clock=clock, orphan_days=30)
    return VoiceSessions(
        Store(redis=redis, keys=keys, scripts=Scripts.load(redis), log=log, clock=clock, sessions=sessions)
    )


async def command_calls(redis: Redis) -> dict[str, int]:
    info = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(stats["calls"]) for name, stats in info.items()}


async def test_a_status_change_runs_six_commands_inside_its_script(redis: Redis) -> None:
    voice = voice_on(redis)
    session = await voice.create(owner_id="alice", telegram_user_id="", name="s")
    first = await voice.set_status(session.id, "recording", OWNER)  # the script is loaded on first use
    before = await command_calls(redis)
    change = await voice.set_status(session.id, "paused", OWNER)
    after = await command_calls(redis)
    assert change.offset == first.offset + 1 and change.previous == "recording"
    ran = {name: calls - before.get(name, 0) for name, calls in after.items() if calls != before.get(name, 0)}
    ran.pop("info", None)
    assert ran.pop("evalsha") == 1
    assert ran == {"hmget": 2, "hset": 2, "xadd": 1, "publish": 1}
    assert (await voice.get(session.id)).status == "paused"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "who, session, code",
    [
        (Performer(user_id="bob", read_scope="own", may_update=True), "own", ErrorCode.FORBIDDEN),  # not the owner
        (Performer(user_id="bob", read_scope="all", may_update=True), "own", ErrorCode.FORBIDDEN),  # reads, not owner
        (Performer(user_id="alice", read_scope="own", may_update=False), "own", ErrorCode.FORBIDDEN),  # no update
        (OWNER, "missing", ErrorCode.SESSION_NOT_FOUND),
    ],
)
async def test_refusals_come_from_the_one_read(redis: Redis, who: Performer, session: str, code: ErrorCode) -> None:
    voice = voice_on(redis)
    created = await voice.create(owner_id="alice", telegram_user_id="", name="s")
    session_id = created.id if session == "own" else "00000000-0000-4000-8000-000000000000"
    with pytest.raises(CodedError) as refused:
        await voice.set_status(session_id, "recording", who)
    assert refused.value.code == code
    assert (await voice.get(created.id)).status == "ready"  # type: ignore[union-attr]


async def test_a_recorder_toggling_recording_reads_the_session_once(
    server: ServerUnderTest, clients: list[Client], redis: Redis
) -> None:
    """The access read before a recording's sweep entry is made once per connection and
    session (the owner never changes; the script checks access on every change anyway)."""
    session_id = await server.create_session("alice")
    recorder = await server.subscriber(clients, session_id)
    before = await command_calls(redis)
    for status in ("recording", "paused", "recording", "paused", "recording"):
        ack = await recorder.call("set_session_status", {"session_id": session_id, "status": status})
        assert ack["ok"] is True and ack["changed"] is True, ack
    after = await command_calls(redis)
    assert after.get("hgetall", 0) - before.get("hgetall", 0) == 1  # the access read, once (3 before)
    assert await redis.zscore(server.services.keys.voice_recording_due(), session_id) is not None
    # another user's connection is still checked before anything is scheduled for it
    stranger = await server.subscriber(clients, await server.create_session("bob"), user="bob")
    await redis.delete(server.services.keys.voice_recording_due())
    refused = await stranger.call("set_session_status", {"session_id": session_id, "status": "recording"})
    assert refused["ok"] is False and refused["error"] == ErrorCode.FORBIDDEN.value
    assert await redis.zscore(server.services.keys.voice_recording_due(), session_id) is None


async def test_the_status_event_is_one_json_envelope_logged_and_published_alike(redis: Redis) -> None:
    """The envelope is built in the script without cjson: the same fields and values as before,
    the log entry and the published message the same text, the id sealed to its position."""
    voice = voice_on(redis)
    keys = Keys("sh")
    session = await voice.create(owner_id="alice", telegram_user_id="", name="s")
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.channel(session.id))
    await pubsub.get_message(timeout=5)  # the subscribe confirmation
    change = await voice.set_status(session.id, "recording", OWNER)
    message = None
    while message is None:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    await pubsub.aclose()
    published = message["data"]
    event = json.loads(published)
    meta = await redis.hgetall(keys.log_meta(session.id))
    assert set(event) == {"session_id", "epoch", "offset", "id", "type", "ts", "data"}
    assert event["session_id"] == session.id and event["type"] == "session_status"
    assert event["epoch"] == meta["epoch"] and event["offset"] == change.offset == int(meta["offset"])
    assert event["id"] == meta["id"] and isinstance(event["ts"], int)
    assert event["data"] == {"status": "recording", "previous": "ready"}
    assert await sealed(redis, session.id, event["epoch"], event["offset"], event["id"])
    [(_, fields)] = await redis.xrange(keys.log(session.id), f"{change.offset}-0", f"{change.offset}-0")
    assert fields["e"] == published


@pytest.mark.parametrize("lost", ["log", "log_meta"])
async def test_a_lost_log_or_metadata_starts_a_new_epoch_at_offset_one(redis: Redis, lost: str) -> None:
    """The append finds a lost log by the answer of its XADD (NOMKSTREAM), not by a check
    before it: the outcome is the one the EXISTS check gave, a new epoch from offset 1."""
    voice = voice_on(redis)
    keys = Keys("sh")
    session = await voice.create(owner_id="alice", telegram_user_id="", name="s")
    await voice.set_status(session.id, "recording", OWNER)
    await voice.set_status(session.id, "paused", OWNER)
    old = await redis.hgetall(keys.log_meta(session.id))
    await redis.delete(getattr(keys, lost)(session.id))
    change = await voice.set_status(session.id, "recording", OWNER)
    meta = await redis.hgetall(keys.log_meta(session.id))
    assert change.offset == 1 and change.previous == "paused"
    assert meta["epoch"] != old["epoch"] and meta["offset"] == "1"
    entries = await redis.xrange(keys.log(session.id))
    assert [entry_id for entry_id, _ in entries] == ["1-0"]  # an orphaned log is dropped, not appended to
    event = json.loads(entries[0][1]["e"])
    assert (event["epoch"], event["offset"], event["id"]) == (meta["epoch"], 1, meta["id"])
    assert await sealed(redis, session.id, meta["epoch"], 1, meta["id"])
    following = await voice.set_status(session.id, "paused", OWNER)
    assert following.offset == 2 and (await redis.hget(keys.log_meta(session.id), "epoch")) == meta["epoch"]


@pytest.mark.parametrize("text", ["plain-id_1.2:3", "", 'quote " and \\ back', "slash/", "é ü 日本", "tab\tnew\nline"])
async def test_the_prologue_quotes_any_string_as_json(redis: Redis, text: str) -> None:
    """Strings of the envelope are quoted directly when JSON needs no escape, else by cjson."""
    body = source("core/_event.lua") + "\nreturn json_string(ARGV[6])"
    quoted = await redis.eval(body, 2, "k1", "k2", "ch", "id", "t|", "0", "10", text)
    assert json.loads(quoted) == text


async def test_a_redis_that_lost_its_scripts_is_given_them_again(redis: Redis) -> None:
    """Scripts are called by EVALSHA without redis-py's per-call pipeline check; a NOSCRIPT
    (a restarted or flushed Redis) still loads the script and runs the change once."""
    voice = voice_on(redis)
    session = await voice.create(owner_id="alice", telegram_user_id="", name="s")
    first = await voice.set_status(session.id, "recording", OWNER)
    await redis.script_flush()
    change = await voice.set_status(session.id, "paused", OWNER)
    assert change.offset == first.offset + 1 and change.previous == "recording"
    assert await redis.xlen(Keys("sh").log(session.id)) == change.offset
