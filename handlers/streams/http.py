"""``/api/streams``: create, list, read, state actions, clips, review, moments (HTTP)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from auth.access import require_permission
from auth.claims import Claims, Permission
from handlers.streams.actions import (
    clear_viewer,
    full,
    owned,
    performer,
    set_blocked,
    set_state,
    streamer_url,
    submit_clip,
    viewer_url,
)
from handlers.streams.answers import (
    BlockChanged,
    BlockedViewers,
    ClipDeleted,
    ClipEdited,
    ClipSubmitted,
    StateChanged,
    StoredClip,
    ViewerCleared,
)
from handlers.streams.attribution import attributed, viewer_names
from handlers.streams.day_cap import ClipsDayCap
from handlers.streams.moments import KeptMoments, grouped_moments
from handlers.streams.payloads import ClipEdit, ClipRequest, CreateStream, StateRequest, ViewerRef
from handlers.streams.queries import ClearQuery, MomentsRouteQuery, OwnClipsQuery, ReviewQuery
from handlers.streams.settings import ClipSettings
from handlers.streams.slices import filtered, json_answer, mapped, released
from handlers.streams.whole_reads import WholeReads
from handlers.context import Services
from handlers.http_common import bearer_claims, client_address, guarded, json_body
from handlers.idempotency import derived_id, idempotent
from handlers.ids import parse_session_id
from handlers.payloads import validate
from handlers.query import LimitQuery, at_most, parse_query
from handlers.rate_limit import created_today, within
from handlers.session_gone import explained
from protocol.errors import CodedError, ErrorCode
from storage.streams.repository import Clip, StreamSession, StreamSessions


def _clipped(clip: Clip) -> bool:
    return clip.clipped


def _capped(moment: dict[str, Any], *, notes: int | None, ids: int | None) -> dict[str, Any]:
    """A moment's row with at most ``notes`` notes and ``ids`` clip ids (None: all), and its
    ``note_count``: a raid's one moment of 3,000 clicks was 3,000 notes and ids in every answer."""
    if notes is None and ids is None:
        return moment
    every = moment["notes"]
    capped = {**moment, "note_count": len(every)}
    if notes is not None:
        capped["notes"] = every[:notes]
    if ids is not None:
        capped["clip_ids"] = moment["clip_ids"][:ids]
    return capped


def clip_id_of(request: web.Request) -> str:
    """The clip id in the path (a UUID v4), or ``invalid_payload``."""
    try:
        return parse_session_id(request.match_info["clip_id"])
    except CodedError as exc:
        raise CodedError(ErrorCode.INVALID_PAYLOAD, "clip_id must be a UUID v4") from exc


class StreamRoutes:
    """Every route needs a bearer token; state, review and export need the owner's."""

    def __init__(
        self, services: Services, streams: StreamSessions, settings: ClipSettings, day_cap: ClipsDayCap
    ) -> None:
        self._s = services
        self._streams = streams
        self._settings = settings
        self._day_cap = day_cap  # the node's one, shared with the socket's clicks (its reserve)
        # Reads of every clip (review, moments): a few per user at once, the others wait.
        self._whole_reads = WholeReads()
        self._kept_moments = KeptMoments()

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``."""
        add = app.router
        add.add_post("/api/streams", guarded(idempotent(self.create, self._s, "stream_create")))
        add.add_get("/api/streams", guarded(self.list_sessions))
        add.add_get("/api/streams/{session_id}", guarded(self.get_session))
        add.add_post("/api/streams/{session_id}/state", guarded(self.state))
        add.add_post("/api/streams/{session_id}/clips", guarded(self.submit))
        add.add_get("/api/streams/{session_id}/clips", guarded(self.review))
        add.add_get("/api/streams/{session_id}/clips/mine", guarded(self.own_clips))
        add.add_get("/api/streams/{session_id}/moments", guarded(self.moments))
        add.add_patch("/api/streams/{session_id}/clips/{clip_id}", guarded(self.edit))
        add.add_delete("/api/streams/{session_id}/clips/{clip_id}", guarded(self.delete))
        add.add_delete("/api/streams/{session_id}/clips", guarded(self.clear))
        add.add_get("/api/streams/{session_id}/blocked", guarded(self.blocked))
        add.add_post("/api/streams/{session_id}/blocked", guarded(self.block))
        add.add_delete("/api/streams/{session_id}/blocked/{user_id}", guarded(self.unblock))

    def _claims(self, request: web.Request) -> Claims:
        return bearer_claims(request, self._s.tokens, self._s.clock)

    async def _body(self, request: web.Request, *, optional: bool = False) -> dict[str, Any]:
        return await json_body(request, max_bytes=self._s.limits.max_payload_bytes, optional=optional)

    async def create(self, request: web.Request) -> web.Response:
        """Create a session owned by the caller; the answer carries both links."""
        claims = self._claims(request)
        require_permission(claims, Permission.CREATE)
        payload = validate(CreateStream, await self._body(request))
        # A keyed request's ids (handlers/idempotency.py): a run before whose node died unanswered
        # may have made the session; it is the answer, nothing counted or created again.
        session_id, audience_id = derived_id(request, "session"), derived_id(request, "audience")
        ids = (session_id, audience_id) if session_id and audience_id else None
        made = await self._streams.get(session_id) if session_id else None
        if made is not None and made.owner_id == claims.sub:
            return self._created(made, claims)
        await self._s.storage_guard.admit("stream_create")
        limits = self._s.limits
        await within(
            self._s.limiter,
            "create",
            claims.sub,
            limit=limits.creates_per_min,
            window_s=60,
            message="too many sessions created; wait a minute",
        )
        # Per address as voice creates are (the same counters): a guest token is cheap, so the
        # per-user limit alone multiplied by the guests one address makes.
        address = client_address(request, trust_forwarded_for=self._s.trust_forwarded_for)
        await within(
            self._s.limiter,
            "create-addr",
            address,
            limit=limits.creates_per_min_per_address,
            window_s=60,
            message="too many sessions created from this address; wait a minute",
        )
        async with created_today(self._s.limiter, address, limit=limits.creates_per_day, guest=claims.guest):
            session = await self._streams.create(
                owner_id=claims.sub,
                title=payload.title,
                game=payload.game,
                viewer_delay_s=payload.viewer_delay_s,
                ids=ids,
            )
        return self._created(session, claims)

    def _created(self, session: StreamSession, claims: Claims) -> web.Response:
        body = {
            "session": full(self._s, session, claims),
            "viewer_url": viewer_url(self._s, session.id),
            "streamer_url": streamer_url(self._s, session.id),
        }
        return web.json_response(body, status=201)

    async def list_sessions(self, request: web.Request) -> web.Response:
        """The caller's stream sessions, newest first (``?limit=``)."""
        claims = self._claims(request)
        limit = at_most("limit", parse_query(LimitQuery, request).limit, self._s.limits.list_limit)
        sessions = await self._streams.list_for_user(claims.sub, limit=limit)
        return web.json_response({"sessions": [full(self._s, s, claims) for s in sessions]})

    async def get_session(self, request: web.Request) -> web.Response:
        """One session with its segments (anyone holding the id); loading it is an access
        (``orphaned`` is from before)."""
        session_id = parse_session_id(request.match_info["session_id"])
        claims = self._claims(request)
        session, position = await self._streams.snapshot(session_id)
        if session is None:
            raise await explained(self._s, session_id, CodedError(ErrorCode.SESSION_NOT_FOUND, "no such session"))
        access = await self._s.sessions.access(session_id)
        body = {**full(self._s, session, claims), "epoch": position.epoch, "offset": position.offset}
        return web.json_response({**body, **(access.public() if access else {})})

    async def state(self, request: web.Request) -> web.Response:
        """start / pause / resume / end, by the owner."""
        session_id = parse_session_id(request.match_info["session_id"])
        claims = self._claims(request)
        payload = validate(StateRequest, await self._body(request))
        changed = StateChanged.model_validate(await set_state(self._streams, claims, session_id, payload.action))
        return web.json_response(changed.wire())

    async def submit(self, request: web.Request) -> web.Response:
        """A viewer's Clip Moment over HTTP (201 when stored, 200 for a retry)."""
        session_id = parse_session_id(request.match_info["session_id"])
        claims = self._claims(request)
        payload = validate(ClipRequest, await self._body(request, optional=True))
        answer = await submit_clip(
            self._streams,
            self._settings,
            claims,
            session_id,
            note=payload.note,
            submission_id=payload.submission_id,
            pressed_ago_ms=payload.pressed_ago_ms,
            address=client_address(request, trust_forwarded_for=self._s.trust_forwarded_for),
            day_cap=self._day_cap,
        )
        return web.json_response(ClipSubmitted.model_validate(answer).wire(), status=201 if answer["created"] else 200)

    async def review(self, request: web.Request) -> web.StreamResponse:
        """Every clip, grouped by segment, with who clicked (the owner only)."""
        session_id = parse_session_id(request.match_info["session_id"])
        claims = self._claims(request)
        await owned(self._streams, claims, session_id)
        query = parse_query(ReviewQuery, request)
        async with self._whole_reads.slot(claims.sub):
            session, clips, position = await self._streams.clips(session_id)
            if session is None:
                raise CodedError(ErrorCode.SESSION_NOT_FOUND, "no such session")
            if query.clipped_only:
                every = clips
                clips = await filtered(_clipped, every)
                await released(every)
            names = await viewer_names(self._s.identities, clips)
            # Grouped in one pass (each segment scanning every clip was segments x clips steps), the
            # rows and the text made in slices: a raid's clips never hold the loop (handlers.streams.slices).
            by_segment: dict[int, list[dict[str, Any]]] = {}

            def row(clip: Clip) -> None:
                by_segment.setdefault(clip.segment_index, []).append(attributed(clip, names))

            await mapped(row, clips)
            clip_count = len(clips)
            await released(clips)
            segments = [{**segment, "clips": by_segment.get(segment["index"], [])} for segment in session.segments]
            body = {
                "session": full(self._s, session, claims),
                "segments": segments,
                "clip_count": clip_count,
                "epoch": position.epoch,
                "offset": position.offset,
            }
            response = await json_answer(request, body, depth=4)  # body, segments, a segment, its clips
            for rows in by_segment.values():
                await released(rows)
            return response

    async def own_clips(self, request: web.Request) -> web.Response:
        """The caller's own clips in the session (any token: a viewer coming back, on any device),
        newest first, as they are now; never another viewer's."""
        session_id = parse_session_id(request.match_info["session_id"])
        claims = self._claims(request)
        query = parse_query(OwnClipsQuery, request)
        list_limit = self._s.limits.list_limit
        limit = list_limit if query.limit is None else at_most("limit", query.limit, list_limit)
        own = await self._streams.own_clips(session_id, claims.sub, limit=limit)
        body = {
            "session_id": session_id,
            "viewer_tag": own.viewer_tag,
            "blocked": own.blocked,
            "clips": [c.for_viewer() for c in own.clips],
        }
        return web.json_response(body)

    async def moments(self, request: web.Request) -> web.StreamResponse:
        """Clips grouped into moments (``?window_s=``, ``?sort=count|time``, ``?only=clipped``)."""
        session_id = parse_session_id(request.match_info["session_id"])
        claims = self._claims(request)
        await owned(self._streams, claims, session_id)
        query = parse_query(MomentsRouteQuery, request)
        window_s, sort = query.window(self._settings), query.sort
        async with self._whole_reads.slot(claims.sub):
            _, clips, position = await self._streams.clips(session_id)
            at = (position.epoch, position.offset)
            only = query.clipped_only
            moments = self._kept_moments.get(session_id, at, window_s=window_s, sort=sort, clipped_only=only)
            if moments is None:  # the clips changed since the last grouping (or none was kept)
                if query.clipped_only:
                    every = clips
                    clips = await filtered(_clipped, every)
                    await released(every)
                moments = await grouped_moments(clips, window_s=window_s, sort=sort)
                self._kept_moments.put(session_id, at, moments, window_s=window_s, sort=sort, clipped_only=only)
            await released(clips)
            rows = await mapped(lambda m: _capped(m.public(), notes=query.notes, ids=query.ids), moments)
            await released(moments)
            body = {
                "session_id": session_id,
                "window_s": window_s,
                "sort": sort,
                "moments": rows,
                "epoch": position.epoch,
                "offset": position.offset,
            }
            response = await json_answer(request, body, depth=2)  # body, its moments
            await released(rows)
            return response

    async def edit(self, request: web.Request) -> web.Response:
        """Mark clipped / unclipped or edit the note (the owner only)."""
        session_id = parse_session_id(request.match_info["session_id"])
        claims = self._claims(request)  # before the clip id: the documented order of refusals
        clip_id = clip_id_of(request)
        payload = validate(ClipEdit, await self._body(request))
        acting = await performer(self._streams, claims, session_id)
        clip = await self._streams.update_clip(session_id, clip_id, acting, clipped=payload.clipped, note=payload.note)
        edited = ClipEdited(session_id=session_id, clip=StoredClip.model_validate(clip.for_owner()))
        return web.json_response(edited.wire())

    async def delete(self, request: web.Request) -> web.Response:
        """Delete a clip (the owner only)."""
        session_id = parse_session_id(request.match_info["session_id"])
        claims = self._claims(request)  # before the clip id: the documented order of refusals
        clip_id = clip_id_of(request)
        clip = await self._streams.delete_clip(session_id, clip_id, await performer(self._streams, claims, session_id))
        return web.json_response(ClipDeleted(session_id=session_id, clip_id=clip.clip_id, deleted=True).wire())

    async def clear(self, request: web.Request) -> web.Response:
        """Remove every clip of the viewer ``?by=`` (the owner only), with one ``clips_cleared`` event."""
        session_id = parse_session_id(request.match_info["session_id"])
        claims = self._claims(request)
        query = parse_query(ClearQuery, request)
        cleared = ViewerCleared.model_validate(await clear_viewer(self._streams, claims, session_id, query.by))
        return web.json_response(cleared.wire())

    async def blocked(self, request: web.Request) -> web.Response:
        """The viewers the owner blocked (the owner only)."""
        session_id = parse_session_id(request.match_info["session_id"])
        await owned(self._streams, self._claims(request), session_id)
        listed = BlockedViewers(session_id=session_id, blocked=await self._streams.blocked(session_id))
        return web.json_response(listed.wire())

    async def block(self, request: web.Request) -> web.Response:
        """Block a viewer from clipping (the owner only; blocking twice changes nothing)."""
        session_id = parse_session_id(request.match_info["session_id"])
        claims = self._claims(request)
        payload = validate(ViewerRef, await self._body(request))
        changed = await set_blocked(self._streams, claims, session_id, payload.user_id, blocked=True)
        return web.json_response(BlockChanged.model_validate(changed).wire())

    async def unblock(self, request: web.Request) -> web.Response:
        """Let a blocked viewer clip again (the owner only)."""
        session_id = parse_session_id(request.match_info["session_id"])
        claims = self._claims(request)
        user_id = validate(ViewerRef, {"user_id": request.match_info["user_id"]}).user_id
        changed = await set_blocked(self._streams, claims, session_id, user_id, blocked=False)
        return web.json_response(BlockChanged.model_validate(changed).wire())
