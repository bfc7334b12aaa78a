"""A big stream's whole read holds Redis no longer than a page, and is still one moment's.

Before, a session of more than a page of clips was first COPYed whole in Redis
(``clips_read.lua``): a COPY of 100,000 clips held Redis ~50 ms (200,000: 99-119 ms), during
which no other session of any user on that node was served. The read now scans the live hash
in pages and settles what changed meanwhile from the session's log (``StreamSessions._scan``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from handlers.streams import http as streams_http
from handlers.streams.moments import grouped_moments
from storage.streams.records import Clip
from storage.streams.repository import StreamSessions, ViewerCaps
from tests.conftest import start_server
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import http, started, store_clips, stored_clip, submitter

# A command of a read this long or longer is a fault (a page's HSCAN, HMGET or settling step
# takes well under 2 ms here; the COPY of 100,000 clips took ~50 ms).
LONGEST_MS = 20


async def slow_commands_of(redis: Any, session_id: str) -> list[bytes]:
    """The SLOWLOG's commands on ``session_id``'s keys: the server's own sweeps (a recording's due
    list, say) run beside a test's reads, and on a loaded machine one took 20 ms too (a CI run)."""
    return [e["command"] for e in await redis.slowlog_get(1000) if session_id.encode() in e["command"]]


# Commands that touch one field, one entry or a key's size (with at most 4 words: no list of them).
ONE_STEP = {
    b"HGET",
    b"HSET",
    b"HDEL",
    b"HEXISTS",
    b"HLEN",
    b"HINCRBY",
    b"ZCARD",
    b"ZSCORE",
    b"ZREM",
    b"GET",
    b"SET",
    b"INCR",
    b"EXISTS",
    b"EXPIRE",
    b"PEXPIRE",
    b"PEXPIREAT",
    b"TTL",
    b"PTTL",
    b"TYPE",
    b"XLEN",
}


def bounded_page(command: bytes, paged_scripts: set[str]) -> bool:
    """Whether a command SLOWLOG caught is one page by its very shape (an HSCAN of at most 1,000
    fields, a call of one of the paged scripts, whose pages are bounded, a ZADD of one entry
    inside one): long only because the machine preempted Redis meanwhile (SLOWLOG times by the
    wall clock; the fresh-clone CI saw a 1,000-field HSCAN at 20-61 ms in each of three reads).
    A COPY of the clips, or a script taking them whole, is no such page."""
    words = command.split()
    if not words:
        return False
    name = words[0].upper()
    if name == b"ZADD" and len(words) == 4:
        # One entry added inside a paged script (SLOWLOG lists a script's own commands too): the
        # review build's ZADD of one clip was caught at 20+ ms at a load of 15 on two cores.
        return True
    if name in ONE_STEP and len(words) <= 4:
        # A command of a paged script that reads or writes one field, one entry or one key's
        # size: whatever SLOWLOG timed, it cannot have taken the clips whole.
        return True
    if name == b"HSCAN":
        upper = [w.upper() for w in words]
        return b"COUNT" in upper and int(words[upper.index(b"COUNT") + 1]) <= 1000
    return name == b"EVALSHA" and len(words) > 1 and words[1].decode() in paged_scripts


@pytest_asyncio.fixture
async def slow_commands(server: ServerUnderTest) -> AsyncIterator[Any]:
    """Redis's SLOWLOG, logging every command of at least ``LONGEST_MS``; put back after."""
    redis = server.services.store.redis
    before = await redis.config_get("slowlog-*")
    await redis.config_set("slowlog-log-slower-than", LONGEST_MS * 1000)
    await redis.config_set("slowlog-max-len", 1000)
    yield redis
    for name, value in before.items():
        await redis.config_set(name, value)


async def test_a_read_of_100000_clips_runs_no_long_command(
    server: ServerUnderTest, clients: list[Client], slow_commands: Any
) -> None:
    session_id, _ = await started(server, clients)
    big = 100_000
    clips = [
        stored_clip(seq, segment_index=1, offset_ms=seq * 700, note="", clipped=False) for seq in range(1, big + 1)
    ]
    await store_clips(server, session_id, clips)
    redis = slow_commands
    # SLOWLOG times a command by the wall clock: on a busy machine a 1 ms page can be preempted
    # past the bound. A read passes when one of three reads ran no long command; a COPY of the
    # clips (~50 ms of Redis's own work here) is long in every one.
    seen: list[list[bytes]] = []
    for _ in range(3):
        await redis.slowlog_reset()
        streams = StreamSessions(server.services.store)
        session, read, position = await streams.clips(session_id)
        assert session is not None and len(read) == big and position.offset >= 1
        seen.append(await slow_commands_of(redis, session_id))
        if not seen[-1]:
            return
    paged = {streams._settle.sha}
    if all(all(bounded_page(command, paged) for command in read_) for read_ in seen):
        return  # a busy machine preempted a page in each read: no command took the clips whole
    raise AssertionError(f"commands of {LONGEST_MS} ms or more in each read: {[[c[:80] for c in r] for r in seen]}")


async def test_clips_changed_during_the_scan_are_read_as_at_the_answers_position(
    server: ServerUnderTest, clients: list[Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Added, edited, deleted and cleared clips, between the scan's pages and between its last
    page and the step that fixes the position: each clip once, as it is at that position."""
    session_id, _ = await started(server, clients)
    clips = [stored_clip(seq, segment_index=1, offset_ms=seq * 100, note="", clipped=False) for seq in range(1, 3001)]
    await store_clips(server, session_id, clips)
    store = server.services.store
    streams = StreamSessions(store, clips_page=100)
    owner = (await streams.get(session_id)).owner_id  # type: ignore[union-attr]
    ids = [str(c["clip_id"]) for c in clips]
    submit = submitter(streams, session_id, note="late")

    added: list[str] = []
    pages = 0
    hscan = store.redis.hscan

    async def changing_hscan(*args: Any, **kwargs: Any) -> Any:
        nonlocal pages
        answer = await hscan(*args, **kwargs)
        pages += 1
        if pages == 2:  # the first pages read: change clips they named and clips still ahead
            for clip_id in ids[:5] + ids[-5:]:
                await streams.update_clip(session_id, clip_id, owner, clipped=True, note="edited")
            for clip_id in ids[5:10] + ids[-10:-5]:
                await streams.delete_clip(session_id, clip_id, owner)
            added.extend([await submit("carol") for _ in range(3)] + [await submit("dave") for _ in range(2)])
        if pages == 5:
            await streams.clear_viewer(session_id, "dave", owner)
        return answer

    settle = streams._settle
    settled: list[bool] = []

    async def changing_settle(*args: Any, **kwargs: Any) -> Any:
        if not settled:
            settled.append(True)
            added.append(await submit("erin"))  # after the last page: read by the settling step
            await streams.delete_clip(session_id, ids[20], owner)
        return await settle(*args, **kwargs)

    monkeypatch.setattr(store.redis, "hscan", changing_hscan)
    monkeypatch.setattr(streams, "_settle", changing_settle)
    session, read, position = await streams.clips(session_id)
    monkeypatch.undo()

    assert pages > 5
    held: dict[str, str] = await store.redis.hgetall(store.keys.stream_clips(session_id))  # type: ignore[misc]
    now = await store.log.position(session_id)
    assert (position.epoch, position.offset) == (now.epoch, now.offset)
    assert session is not None
    assert [c.clip_id for c in read] == [c.clip_id for c in sorted(map(Clip.parse, held.values()), key=Clip.sort_key)]
    assert {c.clip_id: c for c in read} == {i: Clip.parse(t) for i, t in held.items()}
    by_id = {c.clip_id: c for c in read}
    assert all(by_id[i].clipped and by_id[i].note == "edited" for i in ids[:5] + ids[-5:])
    assert not set(ids[5:10] + ids[-10:-5] + [ids[20]]) & set(by_id)
    assert {by_id[i].submitted_by for i in added if i in by_id} == {"carol", "erin"}
    assert len(read) == 3000 - 11 + 3 + 1


async def test_a_log_trimmed_during_the_scan_makes_the_read_scan_again(
    server: ServerUnderTest, clients: list[Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id, _ = await started(server, clients)
    clips = [stored_clip(seq, segment_index=1, offset_ms=seq * 100, note="", clipped=False) for seq in range(1, 2001)]
    await store_clips(server, session_id, clips)
    store = server.services.store
    streams = StreamSessions(store, clips_page=100)
    owner = (await streams.get(session_id)).owner_id  # type: ignore[union-attr]
    doomed = str(clips[-1]["clip_id"])
    pages = 0
    hscan = store.redis.hscan

    async def trimming_hscan(*args: Any, **kwargs: Any) -> Any:
        nonlocal pages
        answer = await hscan(*args, **kwargs)
        pages += 1
        if pages == 1:  # a deletion whose event is gone before the read could see it
            await streams.delete_clip(session_id, doomed, owner)
            await store.redis.xtrim(store.keys.log(session_id), maxlen=0)
        return answer

    monkeypatch.setattr(store.redis, "hscan", trimming_hscan)
    _, read, _ = await streams.clips(session_id)
    monkeypatch.undo()
    assert pages > 20  # scanned twice
    assert doomed not in {c.clip_id for c in read} and len(read) == 1999
    held = await store.redis.hkeys(store.keys.stream_clips(session_id))  # type: ignore[misc]
    assert sorted(c.clip_id for c in read) == sorted(held)


async def _hscans(redis: Any) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_hscan", {}).get("calls", 0))


async def test_a_big_streams_next_read_costs_what_changed(
    server: ServerUnderTest, clients: list[Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dashboard reads every clip again while clips come: a read kept by the process is
    brought forward by the log (no scan), and answers what a fresh read answers."""
    session_id, _ = await started(server, clients)
    clips = [stored_clip(seq, segment_index=1, offset_ms=seq * 50, note="", clipped=False) for seq in range(1, 5001)]
    await store_clips(server, session_id, clips)
    store = server.services.store
    streams = StreamSessions(store, clips_page=500)
    owner = (await streams.get(session_id)).owner_id  # type: ignore[union-attr]
    ids = [str(c["clip_id"]) for c in clips]
    first = await streams.clips(session_id)
    scans = await _hscans(store.redis)

    # Nothing changed: the same answer, no scan, a handful of commands.
    before = await store.redis.info("commandstats")
    again = await streams.clips(session_id)
    after = await store.redis.info("commandstats")
    assert again == first and await _hscans(store.redis) == scans
    commands = sum(int(v["calls"]) for v in after.values()) - sum(int(v["calls"]) for v in before.values())
    # INFO itself, the log read (MULTI, HMGET, XRANGE, EXEC) and the settling step (EVALSHA and
    # its HMGET, HGETALL, LRANGE, HLEN); a scan of these 5,000 clips ran over 40
    assert commands <= 10, commands

    caps = ViewerCaps(per_viewer=10_000, per_address=10_000)
    for viewer in ("carol", "carol", "dave"):
        await streams.submit(
            session_id,
            viewer_id=viewer,
            submission_id=uuid.uuid4().hex,
            note="late",
            cooldown_ms=0,
            max_clips=100_000,
            caps=caps,
        )
    await streams.update_clip(session_id, ids[0], owner, clipped=True, note="edited")
    await streams.delete_clip(session_id, ids[1], owner)
    await streams.clear_viewer(session_id, "dave", owner)
    await streams.transition(session_id, "pause", owner)
    # (The clear indexed these clips, written without it, by viewer first: HSCANs of its own.)
    scans = await _hscans(store.redis)
    session, read, position = await streams.clips(session_id)
    assert await _hscans(store.redis) == scans
    fresh = await StreamSessions(store, clips_page=500).clips(session_id)
    assert (session, read, position) == fresh
    assert session is not None and session.state == "paused" and len(read) == 5000 + 2 - 1
    assert read[0].clipped and read[0].note == "edited" and ids[1] not in {c.clip_id for c in read}

    # The log trimmed past the kept read: it cannot be brought forward, every clip is read.
    await streams.delete_clip(session_id, ids[2], owner)
    await store.redis.xtrim(store.keys.log(session_id), maxlen=0)
    trimmed = await streams.clips(session_id)
    assert await _hscans(store.redis) > scans
    assert trimmed == await StreamSessions(store, clips_page=500).clips(session_id)
    assert ids[2] not in {c.clip_id for c in trimmed[1]}


async def test_the_dashboards_moments_are_grouped_again_only_when_a_clip_changed(
    server: ServerUnderTest, clients: list[Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id, _ = await started(server, clients)
    clips = [stored_clip(seq, segment_index=1, offset_ms=seq * 900, note="", clipped=False) for seq in range(1, 1501)]
    await store_clips(server, session_id, clips)
    groupings: list[int] = []

    async def counted(ordered: list[Clip], **kwargs: Any) -> Any:
        groupings.append(len(ordered))
        return await grouped_moments(ordered, **kwargs)

    monkeypatch.setattr(streams_http, "grouped_moments", counted)
    path = f"/api/streams/{session_id}/moments"
    first = await http(server, "GET", path, params={"sort": "count"})
    again = await http(server, "GET", path, params={"sort": "count"})
    assert first[0] == 200 and again == first and groupings == [1500]
    by_time = await http(server, "GET", path)  # another grouping of the same clips
    assert by_time[0] == 200 and groupings == [1500, 1500]
    status, body = await http(server, "POST", f"/api/streams/{session_id}/clips", user="bob", json={"note": "late"})
    assert status == 201, body
    later = await http(server, "GET", path, params={"sort": "count"})
    assert later[0] == 200 and groupings == [1500, 1500, 1501]
    assert later[1]["offset"] > first[1]["offset"]
    assert sum(m["count"] for m in later[1]["moments"]) == 1501


async def test_a_review_build_of_100000_clips_runs_no_long_command(
    server: ServerUnderTest, clients: list[Client], slow_commands: Any
) -> None:
    """The review index is built from the clips in pages; it COPYed them first (~50 ms here)."""
    session_id, _ = await started(server, clients)
    big = 100_000
    clips = [
        stored_clip(seq, segment_index=1, offset_ms=seq * 700, note="", clipped=False) for seq in range(1, big + 1)
    ]
    await store_clips(server, session_id, clips)
    redis = slow_commands
    review = StreamSessions(server.services.store).review
    seen: list[list[bytes]] = []
    for _ in range(3):  # as in the read's test: one of three builds without a preempted page
        await redis.delete(server.services.keys.stream_review_index(session_id))
        await redis.slowlog_reset()
        summary = await review.summary(session_id, [1], last=0)
        assert summary.total == big
        seen.append(await slow_commands_of(redis, session_id))
        if not seen[-1]:
            return
    paged = {review._build.sha, review._sync.sha, review._summary.sha}
    if all(all(bounded_page(command, paged) for command in build) for build in seen):
        return  # a busy machine preempted a page in each build: no command took the clips whole
    raise AssertionError(f"commands of {LONGEST_MS} ms or more in each build: {[[c[:80] for c in b] for b in seen]}")


async def test_clips_changed_during_a_review_build_are_in_its_index_as_they_are(
    server: ServerUnderTest, clients: list[Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id, _ = await started(server, clients)
    clips = [stored_clip(seq, segment_index=1, offset_ms=seq * 100, note="", clipped=False) for seq in range(1, 6001)]
    await store_clips(server, session_id, clips)
    store = server.services.store
    streams = StreamSessions(store)
    owner = (await streams.get(session_id)).owner_id  # type: ignore[union-attr]
    ids = [str(c["clip_id"]) for c in clips]
    build = streams.review._build
    calls = 0

    async def changing_build(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        answer = await build(*args, **kwargs)
        calls += 1
        if calls == 1:  # after the first page: clips ahead and behind deleted, clips added
            for clip_id in ids[:3] + ids[-3:]:
                await streams.delete_clip(session_id, clip_id, owner)
            for _ in range(4):
                await streams.submit(
                    session_id,
                    viewer_id="carol",
                    submission_id=uuid.uuid4().hex,
                    note="late",
                    cooldown_ms=0,
                    max_clips=100_000,
                    caps=ViewerCaps(per_viewer=100, per_address=100),
                )
        return answer

    monkeypatch.setattr(streams.review, "_build", changing_build)
    summary = await streams.review.summary(session_id, [1], last=0)
    monkeypatch.undo()
    assert calls > 2
    held = set(await store.redis.hkeys(store.keys.stream_clips(session_id)))  # type: ignore[misc]
    assert summary.total == len(held) == 6000 - 6 + 4
    indexed = await store.redis.zrange(store.keys.stream_review_index(session_id), 0, -1)  # type: ignore[misc]
    assert len(indexed) == len(set(indexed)) and set(indexed) == held


@pytest.mark.parametrize("cached, scans_again", [(None, False), (1499, True)])
async def test_the_clips_a_process_keeps_are_a_setting(
    redis_process: Any, tmp_path: Path, cached: int | None, scans_again: bool
) -> None:
    """SESSIONHUB_CLIPS_CACHED bounds the parsed clips a process keeps: by default a stream of
    1,500 clips is kept and read again without a scan; with a bound below it, every read scans."""
    overrides = {} if cached is None else {"clips_cached": cached}
    server = await start_server(redis_process.url, tmp_path, **overrides)
    clients: list[Client] = []
    try:
        session_id, _ = await started(server, clients)
        clips = [stored_clip(seq, segment_index=1, offset_ms=seq * 900, note="", clipped=False) for seq in range(1500)]
        await store_clips(server, session_id, clips)
        path = f"/api/streams/{session_id}/clips"
        first = await http(server, "GET", path)
        scans = await _hscans(server.services.store.redis)
        again = await http(server, "GET", path)
        assert first[0] == again[0] == 200 and again[1]["clip_count"] == 1500
        assert (await _hscans(server.services.store.redis) > scans) is scans_again
    finally:
        for client in clients:
            await client.close()
        await server.stop()
