"""Stream sessions (seed 000): the record, its segments, viewers' clips and their review.

The state machine, the segments and every clip change run as one Lua step each
(``storage/streams/lua/``), check and change and event together. A script that tells the
caller more than a code (the current state, the seconds to wait, the cap) answers
``{false, code, detail}`` like every script (``storage/scripts.py``); :func:`_explained` words
the error from the detail for :func:`storage.scripts.checked`, which raises it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from dataclasses import dataclass
from typing import Any

from protocol import events as etypes
from protocol.errors import CodedError, ErrorCode
from storage.one_at_a_time import OneAtATime
from storage.streams.audience import StreamAudiences
from storage.streams.clips_cache import CACHED_CLIPS, CachedClips, ClipsCache
from storage.streams.review import ReviewIndex
from storage.streams.slices import released, sorted_in_slices
from storage.streams.records import KIND, Clip, StreamSession, Submission, Transition
from storage.events import POSITION_FIELDS, Position
from storage.failures import REDIS_AWAY
from storage.idempotency import again_on_lost_reply
from storage.lean_redis import read_together
from storage.scripts import checked, event_script, plain_script
from storage.store import Store

__all__ = [
    "ACTIONS",
    "KIND",
    "ClearedClips",
    "Clip",
    "StreamSession",
    "StreamSessions",
    "Submission",
    "Transition",
    "ViewerCaps",
]

log = logging.getLogger(__name__)

# Clip submissions in flight to Redis at once, per process. A raid is a thousand concurrent
# clicks; without a bound each would hold one pooled Redis connection, growing the shared pool
# by hundreds of fresh connections (about 5 ms of CPU each in redis-py) in the very second
# that matters, and leaving none for the other capabilities. Queued clicks wait here instead,
# in arrival order; Redis runs each script in well under a millisecond.
SUBMIT_CONCURRENCY = 32

# Clips parsed per turn of the event loop when a whole session's clips are read (a raid leaves
# ten thousand: parsing them in one go held every client of the node for tens of ms).
PARSE_SLICE = 500

# A session's clips answered in one reply when it holds at most this many; a bigger one's
# hash is read in HSCAN pages of about this many (clips_read.lua, StreamSessions._scan): each
# page well under a millisecond of Redis, ~5 ms of parsing here.
CLIPS_PAGE = 1000
# Scans of a big session's clips before a read that keeps coming up short (its slot moving,
# its log trimmed past the scan) gives up with `unavailable`.
SCAN_ATTEMPTS = 3
# Events read per log read while scanning (the log's default length), and most events the
# settling step reads itself (those committed since the last read: a few during a raid).
FOLLOW_EVENTS = 1000
SETTLE_EVENTS = 200
# Most clip ids the settling step reads again; more are read in pages of this many first.
SETTLE_IDS = 1000

# A viewer's clips removed per step of a clear (clip_clear.lua), each page with its own
# clips_cleared event: one step for every clip of a viewer held Redis 1-4 s on a 200,000-clip
# stream (bench/big_stream_own.py), and one event naming 50,000 ids (~2 MB) trimmed the log to
# a couple of events (a log holds about 4 MiB: _event.lua). A page's event, 100 ids of 39
# bytes, stays within 4 MiB / the log's default 1,000 events: a clear shortens no log.
CLEAR_PAGE = 100
# Clips a call of the own index's build indexes (own_index_build.lua decodes each clip and adds
# its entry), and builds one read or clear makes before it answers ``unavailable`` (a build whose
# hash moved to another node mid-scan is made again). Over a 200,000-clip stream 400 a call took
# 7-9 ms of Redis each (INFO commandstats; the review build's 400: 5-6 ms, same load), 200 take
# 2.5-2.7 ms, and the whole build's wall time is the same (4.6-6.8 s on a loaded machine).
OWN_BUILD_PAGE = 200
OWN_BUILDS = 3

# Every snapshot carries all segments: a streamer pausing and resuming without end must not
# grow what each viewer receives without bound.
MAX_SEGMENTS = 500


@dataclass(frozen=True, slots=True)
class Action:
    """A state action: the states it may be taken from, where it leads, whether it opens a segment."""

    allowed_from: frozenset[str]
    to: str
    opens_segment: bool


# created -> active <-> paused -> ended. Ending a session that never went live is allowed (a
# cancelled stream); ended is final. Every move out of active closes the open segment.
ACTIONS: dict[str, Action] = {
    "start": Action(frozenset({"created"}), "active", True),
    "pause": Action(frozenset({"active"}), "paused", False),
    "resume": Action(frozenset({"paused"}), "active", True),
    "end": Action(frozenset({"created", "active", "paused"}), "ended", False),
}


# Viewers one stream's owner may block (about 200 bytes of Redis each, and the owner's listing
# reads them all): far beyond a raid, where a loop of made-up user ids was not bounded at all.
MAX_BLOCKED_VIEWERS = 5_000


def _explained(code: ErrorCode, detail: str, *, limit_of: str = "clips") -> CodedError | None:
    """The error a stream script's refusal ``{false, code, detail}`` stands for, in words."""
    if code is ErrorCode.INVALID_STATE:
        return CodedError(code, f"the stream session is {detail}", state=detail)
    if code is ErrorCode.RATE_LIMITED:
        wait_s = round(int(detail) / 1000, 3)
        # Said in whole seconds, rounded up (a person read "wait 1.957 s"); the field stays exact.
        return CodedError(code, f"wait {math.ceil(wait_s)} s before clipping again", retry_after_s=wait_s)
    if code is ErrorCode.LIMIT_REACHED:
        return CodedError(code, f"this session holds its maximum of {detail} {limit_of}", limit=int(detail))
    if code is ErrorCode.QUOTA_EXCEEDED:
        scope, _, cap = detail.partition(":")
        whose = "you have" if scope == "viewer" else "the guests of your address have"
        return CodedError(
            code, f"{whose} stored the maximum of {cap} clips in this session", limit=int(cap), scope=scope
        )
    if code is ErrorCode.FORBIDDEN and detail == "blocked":
        return CodedError(code, "the streamer blocked you from clipping this session")
    messages = {
        ErrorCode.SESSION_NOT_FOUND: "no such session",
        ErrorCode.FORBIDDEN: "only the streamer may do this",
        ErrorCode.NOT_FOUND: "no such clip",
    }
    return CodedError(code, messages[code]) if code in messages else None


class StreamSessions:
    """Repository of stream sessions, their segments and clips."""

    def __init__(
        self,
        store: Store,
        *,
        max_segments: int = MAX_SEGMENTS,
        clips_page: int = CLIPS_PAGE,
        cached_clips: int = CACHED_CLIPS,
    ) -> None:
        self._max_segments = max_segments
        self._clips_page = clips_page
        self._submitting = asyncio.Semaphore(SUBMIT_CONCURRENCY)
        redis = self._redis = store.redis
        self._keys = store.keys
        self._scripts = store.scripts
        self._log = store.log
        self._clock = store.clock
        self._sessions = store.sessions
        self._transition = event_script(redis, "streams/transition.lua")
        self._submit = event_script(redis, "streams/submit.lua")
        self._update = event_script(redis, "streams/clip_update.lua")
        self._delete = event_script(redis, "streams/clip_delete.lua")
        self._clear = event_script(redis, "streams/clip_clear.lua")
        self._block = event_script(redis, "streams/viewer_block.lua")
        self._own_clips = plain_script(redis, "streams/own_clips.lua")
        self._own_build = plain_script(redis, "streams/own_index_build.lua")
        self._clips_read = plain_script(redis, "streams/clips_read.lua")
        self._settle = plain_script(redis, "streams/clips_settle.lua")
        self._own_announce = plain_script(redis, "streams/own_clip_announce.lua")
        self.audiences = StreamAudiences(store)
        self.review = ReviewIndex(store)
        self._cache = ClipsCache(cached_clips)
        # The own index's builds under way in this process, by session (as the review's).
        self._own_builds = OneAtATime()

    async def create(
        self,
        *,
        owner_id: str,
        title: str,
        game: str,
        viewer_delay_s: int,
        ids: tuple[str, str] | None = None,
    ) -> StreamSession:
        """Create a session in state ``created``, owned by ``owner_id``. ``ids`` (the session's
        and its audience's, else fresh ones) are a keyed request's derived ids
        (handlers/idempotency.py): a run of it before may have made either or both, and a taken
        one is then that run's (the session answered is the one stored)."""
        now = self._clock.now_ms()
        session_id, audience_id = ids or (str(uuid.uuid4()), self.audiences.new_id())
        fields = {
            "id": session_id,
            "kind": KIND,
            "owner_id": owner_id,
            "title": title,
            "game": game,
            "viewer_delay_s": str(viewer_delay_s),
            "state": "created",
            "seg_index": "0",
            "seg_started_at": "",
            "seg_closed_ms": "0",
            "clip_count": "0",
            "clipped_count": "0",
            "clip_seq": "0",
            # Salt of the viewer tags: without it a tag would be a hash of a guessable user id.
            "tag_salt": secrets.token_hex(16),
            "created_at": str(now),
            "updated_at": str(now),
            "ended_at": "",
            "audience_id": audience_id,
            "state_seq": "0",
        }
        session = StreamSession.from_hash(fields, [])
        # The indexes are written first (see storage/sessions.py for why).
        await self._redis.zadd(self._keys.user_streams(owner_id), {session_id: now})
        await self._sessions.index(session_id=session_id, owner_id=owner_id, created_ms=now, kind=KIND)
        args = [etypes.SESSION_UPDATE, _dumps(session.public()), *[x for pair in fields.items() for x in pair]]

        async def stream() -> None:
            await self._log.run(
                self._scripts.session_create, session_id, keys=[self._keys.session(session_id)], args=args, now_ms=now
            )

        async def audience() -> None:
            await self.audiences.create(audience_id=audience_id, stream_id=session_id, owner_id=owner_id, now_ms=now)

        # The audience first: a stream must never exist without it (its viewer page could not
        # follow it), while an audience whose stream never came is an unreachable orphan (listed
        # with the orphans in the admin views, deleted with them). Each step runs again when its
        # reply is lost (a fresh id's `conflict` then means the lost call landed), so a landed
        # stream is answered 201.
        await again_on_lost_reply(_landed(audience), redis=self._redis)
        await again_on_lost_reply(_landed(stream), redis=self._redis)
        if ids is not None:  # the stored one: an earlier run's, made with its own title and salt
            return await self.get(session_id) or session
        return session

    def owned_keys(self, session_id: str) -> list[str]:
        """The session's keys besides its record and log (deleted with it by an operator).

        The viewers' clip cooldowns are left to expire (seconds): finding them would take a scan.
        """
        k = self._keys
        return [
            k.stream_segments(session_id),
            k.stream_clips(session_id),
            k.stream_submissions(session_id),
            k.stream_clip_counts(session_id),
            k.stream_blocked(session_id),
            k.stream_own_index(session_id),
            *self.review.keys(session_id),
        ]

    async def forget(self, session_id: str, record: dict[str, str]) -> None:
        """After an operator deleted the stream: its owner's list, then its audience session."""
        owner_id = record.get("owner_id", "")
        if owner_id:
            await self._redis.zrem(self._keys.user_streams(owner_id), session_id)
        audience_id = record.get("audience_id", "")
        if audience_id:
            await self.audiences.delete(audience_id, stream_id=session_id)

    async def get(self, session_id: str) -> StreamSession | None:
        """The session with its segments, or None when there is no stream session with that id."""
        session, _ = await self.snapshot(session_id)
        return session

    async def snapshot(self, session_id: str) -> tuple[StreamSession | None, Position]:
        """The session and the log position it reflects, read in one transaction."""
        fields, segments, meta = await read_together(
            self._redis,
            ("HGETALL", self._keys.session(session_id)),
            ("LRANGE", self._keys.stream_segments(session_id), 0, -1),
            ("HMGET", self._keys.log_meta(session_id), *POSITION_FIELDS),
        )
        session = StreamSession.from_hash(fields, segments) if fields.get("kind") == KIND else None
        return session, Position.from_meta(meta)

    async def clips(self, session_id: str) -> tuple[StreamSession | None, list[Clip], Position]:
        """The session, all its clips in order and the log position they reflect (one moment's).

        A small session's come in one reply (``clips_read.lua``). A big one's clips hash is
        read in HSCAN pages as it is, and made one moment's by the log (:meth:`_scan`): no
        command of the read holds Redis for more than a page. Parsing and ordering them give
        the loop a turn every slice. A big one's read is kept (``clips_cache.py``) and the next
        read brings it forward by the log: it costs what changed since."""
        kept = self._cache.get(session_id)
        if kept is not None:
            brought = await self._brought_forward(session_id, kept)
            if brought is not None:
                answer = list(kept.ordered)  # the caller's own list: it may empty it (slices.released)
                await self._cache.put(session_id, kept)
                return brought, answer, kept.position
            await released(kept.by_id)
            await released(kept.ordered)
        k = self._keys
        flat, segments, (epoch, offset), texts, held = await self._clips_read(
            keys=[
                k.session(session_id),
                k.stream_segments(session_id),
                k.log_meta(session_id),
                k.stream_clips(session_id),
            ],
            args=[self._clips_page],
        )
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        session = StreamSession.from_hash(fields, segments) if fields.get("kind") == KIND else None
        position = Position(epoch=epoch or "", offset=int(offset or 0))
        if session is not None and int(held):
            session, texts, position = await self._scan(session_id, position)
        clips: list[Clip] = []
        if session is not None:
            for start in range(0, len(texts), PARSE_SLICE):
                if start:
                    await asyncio.sleep(0)
                clips.extend(Clip.parse(t) for t in texts[start : start + PARSE_SLICE])
        await released(texts)
        clips = await sorted_in_slices(clips, key=Clip.sort_key)
        if session is not None and int(held):
            by_id: dict[str, Clip] = {}
            for start in range(0, len(clips), PARSE_SLICE * 10):
                await asyncio.sleep(0)
                by_id.update((c.clip_id, c) for c in clips[start : start + PARSE_SLICE * 10])
            kept_clips, clips = clips, list(clips)  # the caller's own list: it may empty it (slices.released)
            await self._cache.put(session_id, CachedClips(position=position, by_id=by_id, ordered=kept_clips))
        return session, clips, position

    async def _brought_forward(self, session_id: str, kept: CachedClips) -> StreamSession | None:
        """``kept`` brought forward to the log's position now (what the events after its own
        changed, read as in a scan's last step); the session then. None when the log cannot
        say what changed (trimmed past it, a new epoch), the session is gone, or the count
        disagrees: the caller reads every clip."""
        stale: set[str] = set()
        changes: dict[str, str | None] = {}
        epoch = kept.position.epoch
        try:
            offset = await self._followed(session_id, epoch, kept.position.offset, stale)
            settled = await self._settled(session_id, epoch, offset, stale, changes)
        except _ScanAgain:
            return None
        if settled is None:
            return None
        session, position, held = settled
        parsed: dict[str, Clip | None] = {}
        for count, (clip_id, text) in enumerate(changes.items(), start=1):
            parsed[clip_id] = None if text is None else Clip.parse(text)
            if count % PARSE_SLICE == 0:
                await asyncio.sleep(0)
        await kept.apply(parsed, position)
        return session if len(kept.by_id) == held else None

    async def _scan(self, session_id: str, start: Position) -> tuple[StreamSession | None, list[str], Position]:
        """A big session's clips (their JSON texts) as of one log position, read in HSCAN pages
        of the live hash, with its record at that position.

        HSCAN names every field held from its first page to its last, with its value, and may
        name a field twice or miss one added or removed meanwhile. Each change to the clips is
        an event in the session's log (``clip_added``, ``clip_updated``, ``clip_removed``,
        ``clips_cleared``, naming the ids): the log is read from ``start`` after every page, and
        the clips it names are read again, the last of them in the step that fixes the answer's
        position (``clips_settle.lua``). Every other clip was held, unchanged, the whole scan.

        On a cluster the hash may move to another node between two pages: each Redis seeds its
        hash function, so the cursor carried over skips fields there (829 of 5,000 in a probe).
        A read that holds fewer clips than the hash at its position is made again from the
        start, as is one whose log was trimmed past what it read or began a new epoch; one that
        keeps failing is ``unavailable``, never a short answer."""
        for attempt in range(SCAN_ATTEMPTS):
            if attempt:
                start = Position.from_meta(await self._redis.hmget(self._keys.log_meta(session_id), *POSITION_FIELDS))
            found: dict[str, str] = {}
            try:
                settled = await self._scanned(session_id, start, found)
            except _ScanAgain as again:
                log.warning("a scan of %s's clips read again: %s", session_id, again)
                await released(found)
                continue
            if settled is None:
                return None, [], start
            session, position, held = settled
            if len(found) == held:
                texts = list(found.values())
                await released(found)
                return session, texts, position
            log.warning("a scan of %s's clips held %d of %d: scanned again", session_id, len(found), held)
            await released(found)
        raise CodedError(ErrorCode.UNAVAILABLE, "the stream's clips moved while they were read: try again")

    async def _scanned(
        self, session_id: str, start: Position, found: dict[str, str]
    ) -> tuple[StreamSession, Position, int] | None:
        """Fill ``found`` (clip id -> JSON) with the clips at the returned position; also the
        session then and the clips the hash held then. None when the session is gone."""
        clips_key = self._keys.stream_clips(session_id)
        epoch, offset = start.epoch, start.offset
        stale: set[str] = set()  # ids changed since ``found`` took their value
        cursor = 0
        while True:
            cursor, page = await self._redis.hscan(clips_key, cursor, count=self._clips_page)
            found.update(page)  # type: ignore[arg-type]  # decode_responses=True
            offset = await self._followed(session_id, epoch, offset, stale)
            if not cursor:
                break
        changes: dict[str, str | None] = {}
        settled = await self._settled(session_id, epoch, offset, stale, changes)
        for clip_id, text in changes.items():
            if text is None:
                found.pop(clip_id, None)
            else:
                found[clip_id] = text
        return settled

    async def _settled(
        self, session_id: str, epoch: str, offset: int, stale: set[str], changes: dict[str, str | None]
    ) -> tuple[StreamSession, Position, int] | None:
        """The session, the position and the clips held at one moment at or after ``offset``
        (of ``epoch``), with ``changes`` (clip id -> JSON, None: gone) holding, as of then, the
        ``stale`` clips and those the events after ``offset`` name (``clips_settle.lua``).
        None when the session is gone."""
        k = self._keys
        clips_key = k.stream_clips(session_id)
        while True:
            if len(stale) > SETTLE_IDS:
                # Read now, in pages; a change after this read is in the log read next.
                await self._refetched(clips_key, stale, changes)
            reply = await self._settle(
                keys=[
                    k.session(session_id),
                    k.stream_segments(session_id),
                    k.log_meta(session_id),
                    clips_key,
                    k.log(session_id),
                ],
                args=[epoch, offset, SETTLE_EVENTS, *stale],
            )
            if reply[0] == "again":
                raise _ScanAgain("the log no longer says what changed during the scan")
            if reply[0] == "behind":
                offset = await self._followed(session_id, epoch, offset, stale)
                continue
            _, flat, segments, (now_epoch, now_offset), ids, values, held = reply
            changes.update(zip(ids, values, strict=True))
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            if fields.get("kind") != KIND:
                return None
            session = StreamSession.from_hash(fields, segments)
            return session, Position(epoch=now_epoch or "", offset=int(now_offset or 0)), int(held)

    async def _followed(self, session_id: str, epoch: str, offset: int, stale: set[str]) -> int:
        """Read the log after ``offset`` (of ``epoch``), adding the ids of the clips its events
        changed to ``stale``; the offset read up to."""
        while True:
            meta, entries = await read_together(
                self._redis,
                ("HMGET", self._keys.log_meta(session_id), "epoch", "offset"),
                ("XRANGE", self._keys.log(session_id), f"{offset + 1}-0", "+", "COUNT", FOLLOW_EVENTS),
            )
            now = int(meta[1] or 0)
            if (meta[0] or "") != epoch or now < offset:
                raise _ScanAgain("the log began a new epoch")
            if now == offset:
                return offset
            for _, entry in entries:
                event = json.loads(entry["e"])
                if int(event["offset"]) != offset + 1:
                    raise _ScanAgain("the log was trimmed past the scan's start")
                offset += 1
                stale.update(_changed_clips(event.get("data")))
            if not entries:
                raise _ScanAgain("the log was trimmed past the scan's start")

    async def _refetched(self, clips_key: str, stale: set[str], changes: dict[str, str | None]) -> None:
        ids = list(stale)
        stale.clear()
        for begin in range(0, len(ids), SETTLE_IDS):
            chunk = ids[begin : begin + SETTLE_IDS]
            values: list[Any] = await self._redis.hmget(clips_key, chunk)
            changes.update(zip(chunk, values, strict=True))

    async def own_clips(self, session_id: str, viewer_id: str, *, limit: int) -> OwnClips:
        """The newest ``limit`` clips ``viewer_id`` stored that the session still holds, as they
        are now (newest first), with the viewer's tag and block; ``session_not_found`` when there
        is no such stream session. Reads the viewer's range of the own index (built first, in
        pages, where it is short of the clips: :meth:`_build_own_index`)."""
        k = self._keys
        for attempt in range(OWN_BUILDS + 1):
            if attempt:
                await self._build_own_index(session_id)
            result = await self._own_clips(
                keys=[
                    k.session(session_id),
                    k.stream_clips(session_id),
                    k.stream_own_index(session_id),
                    k.stream_blocked(session_id),
                ],
                args=[viewer_id, limit],
            )
            tag, blocked, whole, *texts = checked(result, _explained)
            if str(whole) == "1":
                return OwnClips(viewer_tag=str(tag), blocked=str(blocked) == "1", clips=[Clip.parse(t) for t in texts])
        raise _unindexed()

    async def _build_own_index(self, session_id: str) -> None:
        """Index the session's clips by viewer (``own_index_build.lua``), a page a call: for a
        stream whose clips were stored before the index, or by a node of the previous release.
        One build per session at a time in this process (its callers wait for it)."""
        k = self._keys
        keys = [k.session(session_id), k.stream_clips(session_id), k.stream_own_index(session_id)]

        async def pages() -> None:
            cursor = "start"
            while cursor != "0":
                cursor, _ = await self._own_build(keys=keys, args=[cursor, OWN_BUILD_PAGE])
                cursor = str(cursor)

        await self._own_builds.run(session_id, pages)

    async def list_for_user(self, owner_id: str, *, limit: int) -> list[StreamSession]:
        """The user's stream sessions, newest first (segments not loaded)."""
        ids: Any = await self._redis.zrevrange(self._keys.user_streams(owner_id), 0, limit - 1)
        async with self._redis.pipeline(transaction=False) as pipe:
            for session_id in ids:
                pipe.hgetall(self._keys.session(session_id))
            records = await pipe.execute()
        return [StreamSession.from_hash(r, []) for r in records if r.get("kind") == KIND]

    async def transition(self, session_id: str, action: str, performer_id: str) -> Transition:
        """Take a state action as ``performer_id``, then copy it onto the audience session."""
        step = ACTIONS[action]
        result = await self._log.run(
            self._transition,
            session_id,
            keys=[self._keys.session(session_id), self._keys.stream_segments(session_id)],
            args=[
                performer_id,
                action,
                "," + ",".join(sorted(step.allowed_from)) + ",",
                step.to,
                "1" if step.opens_segment else "0",
                etypes.STREAM_STATE,
                etypes.SEGMENT_OPENED,
                etypes.SEGMENT_CLOSED,
                self._max_segments,
            ],
            explain=partial(_explained, limit_of="segments"),
        )
        change = Transition(offset=int(result[0]), previous=str(result[1]), state=step.to)
        if result[4]:
            await self._copy_to_audience(str(result[4]), change, action, seq=int(result[2]), segment=int(result[3]))
        return change

    async def _copy_to_audience(
        self, audience_id: str, change: Transition, action: str, *, seq: int, segment: int
    ) -> None:
        # The stream's change is committed: failing the streamer's request now would make them
        # retry a change that is done. A lost copy heals: the audience snapshot reads the
        # stream, the next copy carries the newer state, and a refused click makes the viewer
        # page read the state again.
        try:
            await self.audiences.mirror(
                audience_id,
                seq=seq,
                state=change.state,
                previous=change.previous,
                action=action,
                segment_index=segment,
            )
        except Exception:
            log.exception("could not copy a state change (%s) to audience session %s", action, audience_id)

    async def submit(
        self,
        session_id: str,
        *,
        viewer_id: str,
        submission_id: str,
        note: str,
        cooldown_ms: int,
        max_clips: int,
        caps: ViewerCaps,
        pressed_ago_ms: int = 0,
    ) -> Submission:
        """Store one click (see ``submit.lua``), at the moment it was pressed (``pressed_ago_ms``
        before now, as the client says, bounded by the caller); a known submission id returns its
        clip instead."""
        keys = [
            self._keys.session(session_id),
            self._keys.stream_clips(session_id),
            self._keys.stream_submissions(session_id),
            self._keys.stream_cooldown(session_id, viewer_id),
            self._keys.stream_segments(session_id),
            self._keys.stream_clip_counts(session_id),
            self._keys.stream_blocked(session_id),
            self._keys.stream_own_index(session_id),
        ]
        args = [
            viewer_id,
            submission_id,
            note,
            cooldown_ms,
            max_clips,
            str(uuid.uuid4()),
            etypes.CLIP_ADDED,
            caps.per_viewer,
            caps.guest_address,
            caps.per_address,
            pressed_ago_ms,
        ]
        async with self._submitting:
            result = await self._log.run(self._submit, session_id, keys=keys, args=args, explain=_explained)
        clip = Clip.parse(result[1]) if result[1] else None
        created = int(result[2]) == 0
        # The viewer's first clip here: one step, not one per clip. A retry of the viewer's own
        # click takes the step again: the first try's may have been lost (a failover between the
        # clip's step and this one, in another slot), and the retry is answered as stored.
        if clip is not None and clip.submitted_by == viewer_id and (not created or int(result[3])):
            await self._clipped_in(session_id, viewer_id)
        return Submission(clip=clip, created=created, offset=int(result[0]))

    async def _clipped_in(self, session_id: str, viewer_id: str) -> None:
        """At the viewer's first clip in the session: index the session among the viewer's
        (another hash slot: its own step), and keep their identity as one that owns something
        (an account's as long as its devices are used; a guest's for its idle time from now, as
        any visit: ``Identities.keep``). A failure is said and leaves the click answered as
        stored (it is): the viewer's retry of it takes this step again."""
        try:
            added = await self._redis.zadd(
                self._keys.user_clipped(viewer_id), {session_id: self._clock.now_ms()}, nx=True
            )
            if added:
                await self._sessions.owned_by(viewer_id)
        except REDIS_AWAY as exc:
            log.warning("could not index stream session %s among %s's clipped: %s", session_id, viewer_id, exc)

    async def announce_own_clip(self, viewer_id: str, announcement: str) -> None:
        """Tell the viewer's other pages of a clip they stored (``own_clip_announce.lua``, on the
        viewer's own channel: nobody else's connections follow it). ``announcement`` is the
        ``own_clip`` payload's JSON, ``{"session_id", "clip"}``, the clip as viewers see it. The
        click is stored and answered whatever happens here: a lost announcement heals on the
        other pages' next (re)subscription, which reads the own clips again."""
        try:
            await self._own_announce(
                keys=[self._keys.active_session_channel(viewer_id)],
                args=['{"own_clip":' + announcement + "}"],
            )
        except REDIS_AWAY as exc:
            log.warning("could not announce a clip to %s's other pages: %s", viewer_id, exc)

    async def update_clip(
        self, session_id: str, clip_id: str, performer_id: str, *, clipped: bool | None, note: str | None
    ) -> Clip:
        """Mark a clip (un)clipped and/or replace its note, as the owner."""
        result = await self._log.run(
            self._update,
            session_id,
            keys=[self._keys.session(session_id), self._keys.stream_clips(session_id)],
            args=[
                performer_id,
                clip_id,
                "" if clipped is None else ("1" if clipped else "0"),
                "0" if note is None else "1",
                note or "",
                etypes.CLIP_UPDATED,
            ],
            explain=_explained,
        )
        clip = Clip.parse(result[1])
        await self._tell_audience(str(result[2]), clip.viewer_tag, "updated", [clip_id])
        return clip

    async def delete_clip(self, session_id: str, clip_id: str, performer_id: str) -> Clip:
        """Delete a clip, as the owner."""
        result = await self._log.run(
            self._delete,
            session_id,
            keys=[
                self._keys.session(session_id),
                self._keys.stream_clips(session_id),
                self._keys.stream_own_index(session_id),
            ],
            args=[performer_id, clip_id, etypes.CLIP_REMOVED],
            explain=_explained,
        )
        clip = Clip.parse(result[1])
        await self._tell_audience(str(result[2]), clip.viewer_tag, "removed", [clip_id])
        return clip

    async def clear_viewer(self, session_id: str, viewer_id: str, performer_id: str) -> ClearedClips:
        """Remove every clip ``viewer_id`` stored up to now, as the owner: a page of them a step
        (``clip_clear.lua``), each with its ``clips_cleared`` event naming the ids it removed (one
        event, naming none, when there were none). A clear cut short (Redis away between two
        pages) has removed what its pages did: sent again, it removes the rest."""
        k = self._keys
        keys = [k.session(session_id), k.stream_clips(session_id), k.stream_own_index(session_id)]
        after, upto, removed, offset, builds, tag, audience_id = "", "", 0, 0, 0, "", ""
        while True:
            result = await self._log.run(
                self._clear,
                session_id,
                keys=keys,
                args=[performer_id, viewer_id, etypes.CLIPS_CLEARED, after, upto, CLEAR_PAGE, removed],
                explain=_explained,
            )
            page_offset, page_removed, audience_id, tag, after, upto, whole = (str(x) for x in result)
            if whole != "1":
                if builds == OWN_BUILDS:
                    raise _unindexed()
                builds += 1
                await self._build_own_index(session_id)
                continue
            removed += int(page_removed)
            offset = max(offset, int(page_offset))
            if not after:
                break
        if removed:
            # The clip seq the clear reached: an own_clip of a clip up to it that reaches a page
            # after this hint (another channel, another link) is of a clip cleared (watch.js).
            await self._tell_audience(audience_id, tag, "cleared", [], up_to_seq=int(upto))
        return ClearedClips(removed=removed, offset=offset)

    async def set_blocked(self, session_id: str, viewer_id: str, performer_id: str, *, blocked: bool) -> bool:
        """Block or unblock ``viewer_id``, as the owner; True when that changed anything."""
        result = await self._log.run(
            self._block,
            session_id,
            keys=[self._keys.session(session_id), self._keys.stream_blocked(session_id)],
            args=[performer_id, viewer_id, "1" if blocked else "0", etypes.VIEWER_BLOCKED, MAX_BLOCKED_VIEWERS],
            explain=partial(_explained, limit_of="blocked viewers"),
        )
        # Told also when nothing changed: a retry whose first copy was lost heals the page.
        await self._tell_audience(str(result[2]), str(result[3]), "", [], blocked=blocked)
        return str(result[1]) == "1"

    async def _tell_audience(
        self,
        audience_id: str,
        viewer_tag: str,
        change: str,
        clip_ids: list[str],
        *,
        blocked: bool | None = None,
        up_to_seq: int | None = None,
    ) -> None:
        """Tell the viewer (by tag, on the audience log their page follows) that the owner changed
        their clips (``change``) or their block (``blocked``). The owner's step is committed:
        failing their request now would make them retry a change that is done, and a lost
        hint heals on the viewer's next reload or reconnect (their page reads its own clips)."""
        if not audience_id:
            return
        if blocked is None:
            event_type = etypes.CLIPS_CHANGED
            data: dict[str, Any] = {"viewer_tag": viewer_tag, "change": change, "clip_ids": clip_ids}
            if up_to_seq is not None:
                data["up_to_seq"] = up_to_seq
        else:
            event_type, data = etypes.VIEWER_BLOCKED, {"viewer_tag": viewer_tag, "blocked": blocked}
        try:
            await self.audiences.note(audience_id, event_type, data)
        except Exception:
            log.exception("could not tell audience session %s of a change (%s)", audience_id, event_type)

    async def blocked(self, session_id: str) -> list[str]:
        """The user ids the owner blocked, sorted."""
        members: Any = await self._redis.smembers(self._keys.stream_blocked(session_id))
        return sorted(members)


@dataclass(frozen=True, slots=True)
class ViewerCaps:
    """Per-submitter caps of one click: ``guest_address`` is '' for a signed-in viewer."""

    per_viewer: int
    per_address: int
    guest_address: str = ""


@dataclass(frozen=True, slots=True)
class OwnClips:
    """One viewer's own clips in a stream session, their tag there, and whether they are blocked."""

    viewer_tag: str
    blocked: bool
    clips: list[Clip]


@dataclass(frozen=True, slots=True)
class ClearedClips:
    """What clearing one viewer's clips removed, and the offset of its event."""

    removed: int
    offset: int


class _ScanAgain(Exception):
    """A scan of a session's clips that the log cannot make one moment's: made again."""


# The events that change a session's clips name them: one (clip_id) or many (clip_ids).
def _changed_clips(data: Any) -> list[str]:
    if not isinstance(data, dict):
        return []
    ids = [data["clip_id"]] if isinstance(data.get("clip_id"), str) else []
    many = data.get("clip_ids")
    if isinstance(many, list):
        ids.extend(i for i in many if isinstance(i, str))
    return ids


def _unindexed() -> CodedError:
    """A stream whose own index came up short of its clips build after build (its hash moving)."""
    return CodedError(ErrorCode.UNAVAILABLE, "the stream's clips moved while they were indexed: try again")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _landed(create: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """``create`` of a fresh id, where ``conflict`` can only mean an earlier run of it landed."""

    async def once() -> None:
        try:
            await create()
        except CodedError as exc:
            if exc.code is not ErrorCode.CONFLICT:
                raise

    return once
