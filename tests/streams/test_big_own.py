"""A viewer's own clips on a big stream: their read (``GET …/clips/mine``) and the owner's clear
(``clip_clear_viewer``) hold Redis no longer than a page.

Before, the clear read every clip of the session in one script call (HGETALL and a decode of
each: 1.3-3.7 s on a 200,000-clip stream, bench/big_stream_own.py), as did the read of a stream
whose clips were stored before the ids kept beside the counts (HVALS); a viewer with many clips
cost a parse of all their ids (50-330 ms). Now each viewer's clips are a range of the own index
(keys.stream_own_index), kept in the clips' own steps and built in pages where it is short.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import pytest

from storage.streams import repository
from storage.streams.records import Clip
from storage.streams.repository import StreamSessions, ViewerCaps
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import started, store_clips, stored_clip, submitter
from tests.streams.test_big_reads import LONGEST_MS, bounded_page, slow_commands, slow_commands_of

__all__ = ["slow_commands"]  # the fixture, used here by name

# Commands that take a whole hash (or copy it): never a page, however the machine ran.
WHOLE = {b"HGETALL", b"HVALS", b"HKEYS", b"COPY", b"SMEMBERS"}


def tag_of(salt: str, viewer: str) -> str:
    return hashlib.sha1(f"{salt}|{viewer}".encode()).hexdigest()[:12]


def viewer_clips(viewer: str, tag: str, seqs: range) -> list[dict[str, object]]:
    clips = []
    for seq in seqs:
        clip = stored_clip(seq, segment_index=1, offset_ms=seq * 700, note="", clipped=seq % 2 == 0)
        clip.update(submitted_by=viewer, viewer_tag=tag)
        clips.append(clip)
    return clips


async def _salt(server: ServerUnderTest, session_id: str) -> str:
    return str(await server.services.store.redis.hget(server.services.keys.session(session_id), "tag_salt"))


async def _events(server: ServerUnderTest, session_id: str, after: int) -> list[dict[str, Any]]:
    store = server.services.store
    entries = await store.redis.xrange(store.keys.log(session_id), f"{after + 1}-0", "+")
    return [json.loads(fields["e"]) for _, fields in entries]


async def test_own_reads_and_clears_of_100000_clips_run_no_long_command(
    server: ServerUnderTest, clients: list[Client], slow_commands: Any
) -> None:
    """On a 100,000-clip stream stored without the own index (as a release before it left it):
    a fan's 10 clips and a raider's 20,000 read and cleared, no command of 20 ms or more. Each
    of three rounds stores their clips again; one round without a long command passes, as does
    one whose long commands are all bounded pages (the machine preempting Redis: SLOWLOG times
    by the wall clock). The previous scripts took every clip in one call (~0.5-2 s here)."""
    session_id, _ = await started(server, clients)
    store = server.services.store
    salt = await _salt(server, session_id)
    others = [
        stored_clip(seq, segment_index=1, offset_ms=seq * 700, note="", clipped=False) for seq in range(1, 79_991)
    ]
    await store_clips(server, session_id, others)
    redis = slow_commands
    streams = StreamSessions(store)
    seen: list[list[bytes]] = []
    seq = 80_000
    for _ in range(3):
        fan = viewer_clips("fan", tag_of(salt, "fan"), range(seq, seq + 10))
        raider = viewer_clips("raider", tag_of(salt, "raider"), range(seq + 10, seq + 20_010))
        seq += 20_010
        await redis.config_set("slowlog-log-slower-than", -1)
        await store_clips(server, session_id, fan + raider)
        await redis.hset(store.keys.session(session_id), mapping={"clip_count": 100_000, "clip_seq": seq})
        # What the release before the ids beside the counts left: counts only.
        await redis.hset(store.keys.stream_clip_counts(session_id), mapping={"u:fan": 10, "u:raider": 20_000})
        await redis.config_set("slowlog-log-slower-than", LONGEST_MS * 1000)
        await redis.slowlog_reset()
        few = await streams.own_clips(session_id, "fan", limit=200)
        many = await streams.own_clips(session_id, "raider", limit=200)
        assert [c.clip_id for c in few.clips] == [str(c["clip_id"]) for c in reversed(fan)]
        assert [c.clip_id for c in many.clips] == [str(c["clip_id"]) for c in reversed(raider[-200:])]
        assert (await streams.clear_viewer(session_id, "fan", "alice")).removed == 10
        assert (await streams.clear_viewer(session_id, "raider", "alice")).removed == 20_000
        seen.append(await slow_commands_of(redis, session_id))
        assert await redis.hlen(store.keys.stream_clips(session_id)) == 79_990
        assert (await streams.own_clips(session_id, "raider", limit=200)).clips == []
        if not seen[-1]:
            return
    paged = {streams._own_clips.sha} | {s.sha for s in [getattr(streams, "_own_build", None)] if s is not None}

    def page(command: bytes) -> bool:
        words = command.split()
        if bounded_page(command, paged):
            return True
        if words and words[0].upper() == b"EVALSHA":
            # clip_clear.lua's call of a page: its cursor, reach and page size among 12 args (18
            # words or more: SLOWLOG shows an empty arg as nothing); the previous script, which
            # took every clip, had 8 (15 words).
            return words[1].decode() == streams._clear.sha and len(words) >= 18
        return bool(words) and words[0].upper() not in WHOLE  # one step inside a paged script

    if all(all(page(command) for command in round_) for round_ in seen):
        return
    unpaged = [[(c[:100], len(c.split())) for c in r if not page(c)] for r in seen]
    raise AssertionError(f"commands of {LONGEST_MS} ms or more in each round, not a page: {unpaged}")


async def test_a_clear_goes_a_page_at_a_time_and_takes_the_viewers_clips_up_to_its_start(
    server: ServerUnderTest, clients: list[Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """250 clips of bob's among carol's, cleared in pages of 100: each page an event naming its
    ids, the counts right after each; a clip bob stores mid-clear stays; a clip under bob's tag
    that is not his (a 48-bit tag shared) is neither listed to him nor cleared; the dashboard's
    kept read brought forward equals a fresh one; a resend removes nothing, with one event."""
    monkeypatch.setattr(repository, "CLEAR_PAGE", 100)
    session_id, _ = await started(server, clients)
    store = server.services.store
    salt = await _salt(server, session_id)
    streams = StreamSessions(store, clips_page=100)
    submit = submitter(streams, session_id)

    bobs = [await submit("bob") for _ in range(5)]  # through submit.lua: indexed as stored
    written = viewer_clips("bob", tag_of(salt, "bob"), range(1000, 1245))
    carols = viewer_clips("carol", tag_of(salt, "carol"), range(2000, 2300))
    impostor = viewer_clips("mallory", tag_of(salt, "bob"), range(3000, 3001))  # bob's tag, not bob
    await store_clips(server, session_id, written + carols + impostor)  # without the index
    marked = sum(1 for c in written + carols + impostor if c["clipped"])
    await store.redis.hset(
        store.keys.session(session_id),
        mapping={"clip_count": 5 + 245 + 300 + 1, "clipped_count": marked, "clip_seq": 3000},
    )
    bobs += [str(c["clip_id"]) for c in written]

    listed = await streams.own_clips(session_id, "bob", limit=200)  # builds the index first
    assert len(listed.clips) == 200 and all(c.submitted_by == "bob" for c in listed.clips)
    assert str(impostor[0]["clip_id"]) not in {c.clip_id for c in listed.clips}
    kept = await streams.clips(session_id)  # the dashboard's read, kept by the process
    start = (await store.log.position(session_id)).offset

    clear = streams._clear
    pages = 0
    late: list[str] = []

    async def paging(*args: Any, **kwargs: Any) -> Any:
        nonlocal pages
        answer = await clear(*args, **kwargs)
        pages += 1
        if pages == 1:
            late.append(await submit("bob"))
        return answer

    monkeypatch.setattr(streams, "_clear", paging)
    cleared = await streams.clear_viewer(session_id, "bob", "alice")
    monkeypatch.undo()
    assert cleared.removed == 250 and pages == 3
    events = [e for e in await _events(server, session_id, start) if e["type"] == "clips_cleared"]
    assert [len(e["data"]["clip_ids"]) for e in events] == [100, 100, 50]
    assert sorted(i for e in events for i in e["data"]["clip_ids"]) == sorted(bobs)
    assert cleared.offset == events[-1]["offset"]
    held = await store.redis.hgetall(store.keys.stream_clips(session_id))
    assert set(held) == {str(c["clip_id"]) for c in carols + impostor} | set(late)
    clipped = sum(1 for t in held.values() if json.loads(t)["clipped"])
    assert (events[-1]["data"]["count"], events[-1]["data"]["clipped_count"]) == (len(held), clipped)
    session = await streams.get(session_id)
    assert session is not None and (session.clip_count, session.clipped_count) == (len(held), clipped)
    assert [c.clip_id for c in (await streams.own_clips(session_id, "bob", limit=200)).clips] == late

    brought = await streams.clips(session_id)
    assert brought != kept and brought == await StreamSessions(store, clips_page=100).clips(session_id)
    assert sorted(c.clip_id for c in brought[1]) == sorted(held)

    # Sent again: nothing more removed (bob's late clip came after it), one event naming none.
    before = (await store.log.position(session_id)).offset
    again = await streams.clear_viewer(session_id, "bob", "alice")
    assert again.removed == 1  # the late clip: stored before this second clear began
    resent = await streams.clear_viewer(session_id, "bob", "alice")
    assert resent.removed == 0
    events = [e for e in await _events(server, session_id, before) if e["type"] == "clips_cleared"]
    assert [e["data"]["clip_ids"] for e in events] == [late, []]


async def test_the_own_index_is_built_as_the_clips_change_and_anew_when_it_names_clips_gone(
    server: ServerUnderTest, clients: list[Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built in pages (of 10 here) while clips are deleted ahead of the scan and added: the index
    then holds exactly the clips. An index naming clips removed without it (a node of the
    previous release deleted them) is dropped and built anew."""
    monkeypatch.setattr(repository, "OWN_BUILD_PAGE", 10)
    session_id, _ = await started(server, clients)
    store = server.services.store
    salt = await _salt(server, session_id)
    clips = viewer_clips("bob", tag_of(salt, "bob"), range(1, 301))
    await store_clips(server, session_id, clips)
    await store.redis.hset(store.keys.session(session_id), mapping={"clip_count": 300, "clip_seq": 300})
    streams = StreamSessions(store)
    build = streams._own_build
    calls = 0

    async def changing(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        answer = await build(*args, **kwargs)
        calls += 1
        if calls == 2:
            for clip in clips[-3:]:
                await streams.delete_clip(session_id, str(clip["clip_id"]), "alice")
            await streams.submit(
                session_id,
                viewer_id="bob",
                submission_id=uuid.uuid4().hex,
                note="",
                cooldown_ms=0,
                max_clips=100_000,
                caps=ViewerCaps(per_viewer=1000, per_address=1000),
            )
        return answer

    monkeypatch.setattr(streams, "_own_build", changing)
    own = await streams.own_clips(session_id, "bob", limit=5)
    monkeypatch.undo()
    assert calls > 20
    index_key = store.keys.stream_own_index(session_id)
    held = set(await store.redis.hkeys(store.keys.stream_clips(session_id)))
    indexed = await store.redis.zrange(index_key, 0, -1)
    assert len(held) == 298 and {e.split(":")[2] for e in indexed} == held and len(indexed) == len(held)
    ordered = sorted(
        (Clip.parse(t) for t in await store.redis.hvals(store.keys.stream_clips(session_id))), key=lambda c: -c.seq
    )
    assert [c.clip_id for c in own.clips] == [c.clip_id for c in ordered[:5]]

    # Two clips deleted without their entries, one stored without its own: the index names one
    # clip more than the hash holds, so it is built anew, and names exactly the clips again.
    gone = sorted(held)[:2]
    await store.redis.hdel(store.keys.stream_clips(session_id), *gone)
    extra = viewer_clips("bob", tag_of(salt, "bob"), range(5000, 5001))
    await store_clips(server, session_id, extra)
    own = await streams.own_clips(session_id, "bob", limit=1000)
    held = set(await store.redis.hkeys(store.keys.stream_clips(session_id)))
    assert {c.clip_id for c in own.clips} == held and len(held) == 297
    assert {e.split(":")[2] for e in await store.redis.zrange(index_key, 0, -1)} == held
