"""The review of a big stream in pages: each segment's clips in order, a page at a time.

A stream may hold hundreds of thousands of clips. Reading them all to show the first screen
(``StreamSessions.clips``: every clip scanned, parsed and sorted) cost seconds of server CPU and
tens of MB per dashboard load. Here a sorted set of the clip ids in review order (the review
index: segment, offset ms, then clip id) is read by rank: a summary (each segment's count, the
newest clips) and a page of one segment after a cursor cost the same on any size of stream.

The index is kept by its readers, not by the clip scripts, so a click's step (the raid's hot
path) is unchanged: before each read it catches up from the session's log (``review_sync.lua``:
clips added, removed, cleared since the position it reflects), and when it cannot (the log
trimmed past it, another epoch, clips written without an event) it is built again from the
clips in pages (``review_build.lua``), then caught up from the position the build began at.
Every answer carries the log position its index reflects, so a page merged with the live
events after that position is exact.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from protocol.errors import CodedError, ErrorCode
from storage.events import Position
from storage.one_at_a_time import OneAtATime
from storage.scripts import plain_script
from storage.store import Store
from storage.streams.records import Clip

# Log events applied per catch-up call: ~1 ms of Redis each thousand.
SYNC_EVENTS = 1000
# Clips indexed per build call, and how long a build's keys live if its process goes away
# mid-build. A call decodes and indexes each clip of its page: 2,000 took 20-28 ms of Redis on
# a 200,000-clip stream (bench/big_stream.py), every other session waiting; 400 take ~5.
BUILD_PAGE = 400
BUILD_TTL_MS = 120_000
# Builds one read makes (a build whose clips moved to another node mid-scan, or that the log
# cannot bring up to date, is made again) before it is answered ``unavailable``.
BUILD_SCANS = 3
# Catch-up calls one read makes before it builds the index again (a raid outrunning its reader).
SYNC_ROUNDS = 20
# How long an index lives unread: ~100 bytes a clip (a third of the clips' own memory) is not
# kept for streams nobody reviews; the next read builds it again.
INDEX_IDLE_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class ReviewPage:
    """One page of a segment's clips, the cursor of the next (None at the segment's end)."""

    clips: list[Clip]
    next_cursor: str | None
    segment_count: int
    position: Position


@dataclass(frozen=True, slots=True)
class ReviewSummary:
    """Each segment's clip count (by index), the last clips on the timeline, the total."""

    counts: dict[int, int]
    last: list[Clip]
    total: int
    position: Position


class ReviewIndex:
    """Reads of a stream's review by rank, keeping its index up with the log first."""

    def __init__(self, store: Store) -> None:
        self._redis = store.redis
        self._keys = store.keys
        self._sync = plain_script(store.redis, "streams/review_sync.lua")
        self._build = plain_script(store.redis, "streams/review_build.lua")
        self._page = plain_script(store.redis, "streams/review_page.lua")
        self._summary = plain_script(store.redis, "streams/review_summary.lua")
        # The builds under way in this process, by session: a dashboard's first load asks for
        # the summary and five pages at once, and each finding no index built its own (five
        # builds of 200,000 clips at once took 66 s on a loaded machine, one 12 s).
        self._builds = OneAtATime()

    def keys(self, session_id: str) -> list[str]:
        """The index's keys (deleted with the session)."""
        return [self._keys.stream_review_index(session_id), self._keys.stream_review_meta(session_id)]

    async def summary(self, session_id: str, segments: list[int], *, last: int) -> ReviewSummary:
        """The clip count of each of ``segments`` and the ``last`` clips on the timeline."""
        await self.catch_up(session_id)
        k = self._keys
        counts, texts, total, epoch, offset = await self._summary(
            keys=[k.stream_review_index(session_id), k.stream_clips(session_id), k.stream_review_meta(session_id)],
            args=[last, *segments],
        )
        return ReviewSummary(
            counts={index: int(n) for index, n in zip(segments, counts, strict=True)},
            last=[Clip.parse(t) for t in texts],
            total=int(total),
            position=Position(epoch=str(epoch or ""), offset=int(offset)),
        )

    async def page(self, session_id: str, segment: int, *, after: tuple[int, str] | None, limit: int) -> ReviewPage:
        """Up to ``limit`` clips of ``segment`` after the cursor ``after`` (offset ms, clip id)."""
        await self.catch_up(session_id)
        k = self._keys
        after_ms, after_id = (str(after[0]), after[1]) if after else ("", "")
        texts, cursor, count, epoch, offset = await self._page(
            keys=[k.stream_review_index(session_id), k.stream_clips(session_id), k.stream_review_meta(session_id)],
            args=[segment, after_ms, after_id, limit],
        )
        return ReviewPage(
            clips=[Clip.parse(t) for t in texts],
            next_cursor=str(cursor).replace(" ", ".") or None,
            segment_count=int(count),
            position=Position(epoch=str(epoch or ""), offset=int(offset)),
        )

    async def catch_up(self, session_id: str) -> None:
        """Bring the index up to the log's position (built anew when it cannot be)."""
        k = self._keys
        keys = [
            k.stream_review_index(session_id),
            k.stream_review_meta(session_id),
            k.log(session_id),
            k.log_meta(session_id),
            k.stream_clips(session_id),
        ]
        for _ in range(SYNC_ROUNDS):
            status, _, _ = await self._sync(keys=keys, args=[SYNC_EVENTS, INDEX_IDLE_MS])
            if status == "synced":
                return
            if status == "rebuild":
                break
        for _ in range(BUILD_SCANS):
            await self.rebuild(session_id)
            # The clips changed while it was built: at most a build's worth of the log. A build
            # that cannot be caught up, or whose count disagrees once caught up (its clips moved
            # to another node mid-scan), is made again.
            for _ in range(SYNC_ROUNDS):
                status, _, _ = await self._sync(keys=keys, args=[SYNC_EVENTS, INDEX_IDLE_MS])
                if status != "more":
                    break
            if status == "synced":
                return
        raise CodedError(ErrorCode.UNAVAILABLE, "the stream's clips moved while its review was built: try again")

    async def rebuild(self, session_id: str) -> None:
        """Build the index from the clips, a page per call, and put it in place; a
        read finding a build under way in this process waits for that one."""
        await self._builds.run(session_id, lambda: self._build_pages(session_id))

    async def _build_pages(self, session_id: str) -> None:
        k = self._keys
        keys = [
            k.stream_clips(session_id),
            k.stream_review_build(session_id, uuid.uuid4().hex),
            k.stream_review_index(session_id),
            k.stream_review_meta(session_id),
            k.log_meta(session_id),
        ]
        cursor, position = "start", ""
        try:
            while cursor != "0":
                cursor, position = await self._build(keys=keys, args=[cursor, BUILD_PAGE, BUILD_TTL_MS, position])
        finally:
            if cursor != "0":
                await self._redis.unlink(keys[1])
