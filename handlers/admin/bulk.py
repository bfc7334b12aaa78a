"""Bulk admin actions: streamed export (all sessions or orphans) and deleting orphans.

Both stream their answer as they go, so a large store never sits in memory and the page can
show progress: the export is JSON lines (a header line with the total, then one session per
line), the deletion NDJSON progress lines. Orphans are never deleted automatically: only by
this route, after a dry-run count that the deletion must repeat.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from auth.claims import Claims
from handlers.admin.access import admin_claims, take_admin_action
from handlers.admin.answers import OrphanCount
from handlers.admin.config import AdminConfig
from handlers.admin.deletion import SessionDeleter
from handlers.admin.requests import ExportQuery, OrphanDelete, parse_body, parse_query
from handlers.context import Services
from handlers.http_common import guarded, json_body
from protocol.errors import CodedError, ErrorCode
from storage.admin.repository import AdminStore
from storage.admin.recalc import AdminRecalc

PROGRESS_EVERY = 50


def _line(value: dict[str, Any]) -> bytes:
    return (json.dumps(value, separators=(",", ":")) + "\n").encode()


@dataclass(slots=True)
class _Progress:
    """How far a deletion of orphans went (its audit entry says so, however it ended)."""

    deleted: int = 0
    completed: bool = False


class BulkRoutes:
    """``GET /admin/export`` and ``POST /admin/orphans/delete``."""

    def __init__(
        self,
        services: Services,
        *,
        store: AdminStore,
        recalc: AdminRecalc,
        config: AdminConfig,
        deleter: SessionDeleter,
    ) -> None:
        self._s = services
        self._store = store
        self._deleter = deleter
        self._recalc = recalc
        self._config = config

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``."""
        app.router.add_get("/admin/export", guarded(self.export))
        app.router.add_post("/admin/orphans/delete", guarded(self.delete_orphans))

    async def _action_allowed(self, claims: Claims) -> None:
        await take_admin_action(self._s, claims, per_min=self._config.actions_per_min)

    async def export(self, request: web.Request) -> web.StreamResponse:
        """Every session, or only orphans, as a JSON-lines download."""
        claims = await admin_claims(request, self._s)
        q = parse_query(ExportQuery, request.query)
        days = q.older_than_days or self._store.orphan_days
        ids = await self._recalc.orphan_ids(days) if q.scope == "orphans" else await self._recalc.all_ids()
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/x-ndjson",
                "Content-Disposition": f'attachment; filename="sessionhub-{q.scope}.jsonl"',
                "X-Total-Count": str(len(ids)),
                "Cache-Control": "no-store",
            }
        )
        await response.prepare(request)
        header = {"export": q.scope, "total": len(ids), "exported_at": self._s.clock.now_ms(), "by": claims.sub}
        if q.scope == "orphans":
            header["older_than_days"] = days
        await response.write(_line(header))
        async for batch in self._recalc.records(ids):
            shown = await asyncio.gather(*(self._as_shown(session_id, record) for session_id, record in batch))
            for (session_id, record), session in zip(batch, shown, strict=True):
                line = {"session_id": session_id, "kind": record.get("kind", ""), "session": session, "record": record}
                await response.write(_line(line))
        await response.write_eof()
        return response

    async def _as_shown(self, session_id: str, record: dict[str, str]) -> dict[str, Any] | None:
        """The session as its own API and a subscriber's snapshot show it (a pattern's whole
        state as one document, typed values), beside the stored fields (``record``: every value a
        string, a pattern's state split per field); None for a kind this server does not serve,
        or a session deleted since the listing."""
        kind = self._s.kinds.get(record.get("kind", ""))
        snapshot = await kind.snapshot(session_id) if kind is not None else None
        return snapshot.session if snapshot is not None else None

    async def delete_orphans(self, request: web.Request) -> web.StreamResponse:
        """A dry run answers the count; a deletion must repeat it, then streams its progress."""
        claims = await admin_claims(request, self._s)
        body = parse_body(OrphanDelete, await json_body(request, max_bytes=1024))
        days = body.older_than_days or self._store.orphan_days  # as the export's default
        count = await self._recalc.count_orphans(days)
        if body.dry_run:
            counted = OrphanCount(dry_run=True, older_than_days=days, count=count)
            return web.json_response(counted.wire())
        if body.confirm_count != count:
            raise CodedError(
                ErrorCode.CONFLICT, "the number of orphans changed since the dry run; count again", count=count
            )
        await self._action_allowed(claims)
        ids = await self._recalc.orphan_ids(days)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"})
        await response.prepare(request)
        progress = _Progress()
        try:
            await self._delete_each(ids, days, claims, response, progress)
            progress.completed = True
        finally:
            # Written however it ended: a deletion the operator's connection cut (its next
            # progress line fails), or the server's stop cancelled, had deleted sessions and left
            # no trace in the audit log (audit "multinode").
            detail = {"older_than_days": days, "confirmed": count, "deleted": progress.deleted}
            if not progress.completed:
                detail["completed"] = False
            await self._store.audit(actor=claims.sub, action="delete_orphans", target="*", detail=detail)
        await response.write(_line({"done": True, "deleted": progress.deleted, "total": len(ids)}))
        await response.write_eof()
        return response

    async def _delete_each(
        self, ids: list[str], older_than_days: int, claims: Claims, response: web.StreamResponse, progress: _Progress
    ) -> None:
        went_with: set[str] = set()  # counted orphans that went with a session deleted before them
        for done, session_id in enumerate(ids, start=1):
            if done % PROGRESS_EVERY == 0:
                await response.write(_line({"deleted": progress.deleted, "done": done - 1, "total": len(ids)}))
            # An orphan stream's audience (an orphan with it) goes with the stream: deleted, as
            # counted. It was left out, and the page said 5 of 6 deleted where all 6 were gone.
            if session_id in went_with and not await self._s.redis.exists(self._s.keys.session(session_id)):
                progress.deleted += 1
                continue
            # Accessed since the count (a user came back to it): no longer an orphan, kept.
            if not await self._recalc.still_orphan(session_id, older_than_days):
                continue
            bound_ms = self._s.clock.now_ms() - older_than_days * 86_400_000
            try:
                deleted = await self._deleter.delete(
                    session_id, actor=claims.sub, known_kinds_only=False, orphan_bound_ms=bound_ms
                )
                progress.deleted += 1
                if deleted.companion:
                    went_with.add(deleted.companion)
            except CodedError as exc:
                if exc.code is ErrorCode.CONFLICT:
                    continue  # used since the index said orphan (the script re-checked): kept
                if exc.code is not ErrorCode.SESSION_NOT_FOUND:
                    raise
                # Gone meanwhile (deleted by its owner): drop any index entry it left.
                await self._s.sessions.unindex(session_id=session_id, owner_id="")
