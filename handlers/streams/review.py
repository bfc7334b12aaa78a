"""``/api/streams/{id}/review``: the streamer's review of a stream of any size, in pages.

``GET …/clips`` answers every clip at once: on a 200,000-clip stream that was tens of MB and
seconds of server CPU before the dashboard showed anything. The summary here is bounded (each
segment's clip count, the last clips on the timeline) and each segment's clips come a page at a
time after a cursor (offset, clip id), read by rank from the review index
(storage/streams/review.py). Pages never repeat or skip a clip: the cursor is a place in the
order, not a count, so clips arriving or deleted meanwhile move nothing; each answer names the
log offset it reflects, and the live events after it complete it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from auth.claims import Claims
from handlers.context import Services
from handlers.http_common import bearer_claims, guarded
from handlers.ids import parse_session_id
from handlers.query import at_most, parse_query
from handlers.streams.actions import full, owned
from handlers.streams.attribution import attributed, viewer_names
from handlers.streams.queries import REVIEW_PAGE_DEFAULT, ReviewPageQuery, ReviewSummaryQuery
from protocol.errors import CodedError, ErrorCode
from storage.streams.repository import StreamSessions


class ReviewRoutes:
    """The paged review (the owner only)."""

    def __init__(self, services: Services, streams: StreamSessions) -> None:
        self._s = services
        self._streams = streams

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``."""
        app.router.add_get("/api/streams/{session_id}/review", guarded(self.summary))
        app.router.add_get("/api/streams/{session_id}/review/clips", guarded(self.page))

    def _claims(self, request: web.Request) -> Claims:
        return bearer_claims(request, self._s.tokens, self._s.clock)

    async def summary(self, request: web.Request) -> web.Response:
        """Each segment with its clip count, and the last clips on the timeline."""
        session_id = parse_session_id(request.match_info["session_id"])
        claims = self._claims(request)
        query = parse_query(ReviewSummaryQuery, request)
        session = await owned(self._streams, claims, session_id)
        indexes = [int(s["index"]) for s in session.segments]
        found = await self._streams.review.summary(session_id, indexes, last=query.last)
        # The session as it is now, read after the summary: at least as new as the summary's
        # position, so that the page's events after that position bring it forward (each applies
        # again harmlessly). Read before it, a state change landing between the two reads was in
        # the position and not in the session: the page dropped the change as already there and
        # showed a stream just started as 'Not started' until a reload.
        session = await owned(self._streams, claims, session_id)
        names = await viewer_names(self._s.identities, found.last)
        segments = [{**s, "clip_count": found.counts.get(int(s["index"]), 0)} for s in session.segments]
        body: dict[str, Any] = {
            "session": full(self._s, session, claims),
            "segments": segments,
            "clip_count": found.total,
            "last": [attributed(c, names) for c in found.last],
            "epoch": found.position.epoch,
            "offset": found.position.offset,
        }
        return web.json_response(body)

    async def page(self, request: web.Request) -> web.Response:
        """One page of a segment's clips after ``?after=`` (``?segment=&limit=``)."""
        session_id = parse_session_id(request.match_info["session_id"])
        claims = self._claims(request)
        query = parse_query(ReviewPageQuery, request)
        session = await owned(self._streams, claims, session_id)
        if not any(int(s["index"]) == query.segment for s in session.segments):
            raise CodedError(ErrorCode.NOT_FOUND, f"the stream has no segment {query.segment}")
        list_limit = self._s.limits.list_limit
        limit = (
            min(REVIEW_PAGE_DEFAULT, list_limit) if query.limit is None else at_most("limit", query.limit, list_limit)
        )
        found = await self._streams.review.page(session_id, query.segment, after=query.cursor, limit=limit)
        names = await viewer_names(self._s.identities, found.clips)
        body = {
            "session_id": session_id,
            "segment_index": query.segment,
            "clips": [attributed(c, names) for c in found.clips],
            "next": found.next_cursor,
            "segment_clip_count": found.segment_count,
            "epoch": found.position.epoch,
            "offset": found.position.offset,
        }
        return web.json_response(body)
