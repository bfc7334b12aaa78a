"""Listening HTTP routes: report, upload, history pages, stats, export, deletion.

Every route needs a bearer token and serves the caller's own history only.
"""

from __future__ import annotations

import asyncio
import re
from datetime import date, timedelta
from zoneinfo import ZoneInfo
from typing import Any

from aiohttp import web

from auth.claims import Claims
from handlers.context import Services
from handlers.http_common import bearer_claims, client_address, guarded, json_body
from handlers.listening import actions
from handlers.listening.answers import HistoryCleared, ListeningDeleted
from handlers.listening.day_cap import GuestDayCap
from handlers.listening.payloads import (
    CURSOR_PATTERN,
    MAX_MS,
    UUID4,
    ClearBody,
    ExportQuery,
    PageQuery,
    ReportBody,
    StatsQuery,
    UploadBody,
)
from handlers.listening.export import ListeningExports
from handlers.listening.stats import add_to_days, day_start_ms, empty_days, local_day, streaks, time_zone
from handlers.payloads import validate
from handlers.query import at_most, parse_query
from handlers.rate_limit import within
from protocol.errors import CodedError, ErrorCode
from storage.listening.repository import ListeningHistories
from storage.listening.model import ListeningSession

# Streaks look back a year; the chart shows up to that.
STREAK_DAYS = 366
# Sessions read for one stats answer (a year of heavy listening fits many times over), newest
# first, a slice at a time so that other clients are served in between.
STATS_READ_CAP = 50_000
STATS_SLICE = 500
TOP_ITEMS = 20


class ListeningRoutes:
    """``/api/listening/*``."""

    def __init__(
        self, services: Services, histories: ListeningHistories, cap: GuestDayCap, *, reports_per_min: int
    ) -> None:
        self._s = services
        self._h = histories
        self._cap = cap
        self._reports_per_min = reports_per_min
        self._exports = ListeningExports(histories)

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``."""
        app.router.add_get("/api/listening", guarded(self.history))
        app.router.add_post("/api/listening/report", guarded(self.report))
        app.router.add_post("/api/listening/upload", guarded(self.upload))
        app.router.add_get("/api/listening/sessions", guarded(self.sessions))
        app.router.add_delete("/api/listening/sessions/{id}", guarded(self.delete))
        app.router.add_post("/api/listening/clear", guarded(self.clear))
        app.router.add_get("/api/listening/stats", guarded(self.stats))
        app.router.add_get("/api/listening/export", guarded(self.export))

    def _claims(self, request: web.Request) -> Claims:
        claims = bearer_claims(request, self._s.tokens, self._s.clock)
        actions.require_history_read(claims)
        return claims

    async def _body(self, request: web.Request) -> dict[str, Any]:
        return await json_body(request, max_bytes=self._s.limits.max_payload_bytes)

    async def _write_budget(self, claims: Claims) -> None:
        await within(
            self._s.limiter,
            "listening",
            claims.sub,
            limit=self._reports_per_min,
            window_s=60,
            message="too many listening writes; wait a minute",
        )

    async def history(self, request: web.Request) -> web.Response:
        """The caller's history session (created on first use), totals and open sessions; loading
        it is an access (``orphaned`` is from before)."""
        claims = self._claims(request)
        history_id = await self._h.ensure(claims.sub)
        access = await self._s.sessions.access(history_id)
        snapshot, position = await self._h.snapshot(history_id)
        assert snapshot is not None  # ensured just now
        return web.json_response(
            {
                "session_id": history_id,
                "epoch": position.epoch,
                "offset": position.offset,
                "total_ms": snapshot.total_ms,
                "count": snapshot.count,
                "open": await self._public(history_id, snapshot.open),
                **(access.public() if access else {}),
            }
        )

    async def report(self, request: web.Request) -> web.Response:
        """A status report (the socket event's HTTP twin)."""
        claims = self._claims(request)
        body = validate(ReportBody, await self._body(request))
        await self._write_budget(claims)
        history_id = await self._h.ensure(claims.sub)
        self._s.sessions.used(history_id)
        address = client_address(request, trust_forwarded_for=self._s.trust_forwarded_for)
        return web.json_response(await actions.report(self._h, self._cap, claims, address, history_id, body))

    async def upload(self, request: web.Request) -> web.Response:
        """An offline player's finished session: 201 when stored, 200 for a repeat or a session
        under the minimum length (dropped, ``action: deleted``)."""
        claims = self._claims(request)
        body = validate(UploadBody, await self._body(request))
        await self._write_budget(claims)
        history_id = await self._h.ensure(claims.sub)
        self._s.sessions.used(history_id)
        address = client_address(request, trust_forwarded_for=self._s.trust_forwarded_for)
        ack = await actions.upload(self._h, self._cap, self._s.clock, claims, address, history_id, body)
        return web.json_response(ack, status=201 if ack["action"] == "uploaded" else 200)

    async def sessions(self, request: web.Request) -> web.Response:
        """Sessions newest first: ``?limit``, ``?cursor``, ``?item_id``, ``?from``/``?to`` (ms)."""
        claims = self._claims(request)
        q = parse_query(PageQuery, request)
        limit = at_most("limit", q.limit, self._s.limits.list_limit)
        from_ms, to_ms, item = q.from_ms, q.to_ms, q.item_id
        cursor = _cursor(q.cursor)
        history_id = await self._h.find(claims.sub)
        if history_id is None:
            return web.json_response({"sessions": [], "next_cursor": None})
        if item is not None:
            page, after = await self._h.page_for_item(
                history_id, item, limit=limit, cursor=cursor, from_ms=from_ms, to_ms=to_ms
            )
        else:
            page, after = await self._h.page(history_id, limit=limit, cursor=cursor, from_ms=from_ms, to_ms=to_ms)
        next_cursor = f"{after[0]}:{after[1]}" if after else None
        return web.json_response({"sessions": await self._public(history_id, page), "next_cursor": next_cursor})

    async def _public(self, history_id: str, sessions: list[ListeningSession]) -> list[dict[str, Any]]:
        meta = await self._h.metadata(history_id, [s.item_id for s in sessions])
        return [s.public(meta.get(s.item_id)) for s in sessions]

    async def delete(self, request: web.Request) -> web.Response:
        """Delete one listening session."""
        claims = self._claims(request)
        listening_id = request.match_info["id"].lower()  # any case, as every id (handlers.ids)
        if not re.fullmatch(UUID4, listening_id):
            raise CodedError(ErrorCode.INVALID_PAYLOAD, "the listening session id must be a UUID v4")
        await self._write_budget(claims)
        history_id = await self._h.find(claims.sub)
        if history_id is None:
            raise CodedError(ErrorCode.NOT_FOUND, "no such listening session")
        deleted = ListeningDeleted.model_validate(await actions.delete(self._h, claims, history_id, listening_id))
        return web.json_response(deleted.wire())

    async def clear(self, request: web.Request) -> web.Response:
        """Delete the whole history; the body must be ``{"confirm": true}``."""
        claims = self._claims(request)
        body = validate(ClearBody, await self._body(request))
        await self._write_budget(claims)  # every HTTP write is (PROTOCOL: HTTP)
        history_id = await self._h.ensure(claims.sub)
        cleared = HistoryCleared.model_validate(await actions.clear(self._h, claims, history_id, body))
        return web.json_response(cleared.wire())

    async def stats(self, request: web.Request) -> web.Response:
        """Totals, per item, per local day (``?tz``, ``?days`` 1..366), streaks, last 10."""
        claims = self._claims(request)
        q = parse_query(StatsQuery, request)
        tz, days = time_zone(q.tz), q.days
        history_id = await self._h.find(claims.sub)
        now = self._s.clock.now_ms()
        today = local_day(now, tz)
        first = today - timedelta(days=STREAK_DAYS - 1)
        totals = empty_days(first, today)
        if history_id is None:
            total_ms = count = 0
            items: list[tuple[str, int]] = []
            last: list[ListeningSession] = []
        else:
            await self._add_days(totals, history_id, day_start_ms(first, tz), now + 1, tz)
            total_ms, count = await self._h.totals(history_id)
            items = await self._h.item_totals(history_id, limit=TOP_ITEMS)
            last, _ = await self._h.page(history_id, limit=10, cursor=None, from_ms=0, to_ms=MAX_MS)
        current, longest = streaks(totals, today)
        shown = sorted(totals)[-days:]
        meta = await self._h.metadata(history_id, [i for i, _ in items]) if history_id else {}
        return web.json_response(
            {
                "tz": tz.key,
                "today": today.isoformat(),
                "total_ms": total_ms,
                "count": count,
                "items": [
                    {
                        "item_id": item,
                        "title": meta.get(item, {}).get("title") or item,
                        "artist": meta.get(item, {}).get("artist"),
                        "total_ms": ms,
                    }
                    for item, ms in items
                ],
                "days": [{"date": day.isoformat(), "total_ms": totals[day]} for day in shown],
                "streak": {"current": current, "longest": longest, "window_days": STREAK_DAYS},
                "last": await self._public(history_id, last) if history_id else [],
            }
        )

    async def _add_days(self, totals: dict[date, int], history_id: str, from_ms: int, to_ms: int, tz: ZoneInfo) -> None:
        pages = self._h.overlapping(history_id, from_ms, to_ms, page_size=STATS_SLICE, cap=STATS_READ_CAP)
        async for page in pages:
            add_to_days(totals, page, tz)
            await asyncio.sleep(0)

    async def export(self, request: web.Request) -> web.StreamResponse:
        """The caller's whole history as ``?format=json`` (default) or ``csv``, streamed as a download."""
        claims = self._claims(request)
        query = parse_query(ExportQuery, request)
        history_id = await self._h.find(claims.sub)
        return await self._exports.respond(
            request, user_id=claims.sub, history_id=history_id, fmt=query.format, bom=query.bom == "1"
        )


def _cursor(raw: str | None) -> tuple[int, str] | None:
    match = re.fullmatch(CURSOR_PATTERN, raw) if raw is not None else None
    return (int(match.group(1)), match.group(2)) if match else None  # the model checked its pattern
