"""``/admin/*`` JSON routes: metrics, sessions (list, detail, delete), recalculate, audit.

Every route checks the admin permission first (``unauthorized`` / ``forbidden``); every
action that changes data is rate limited per admin and written to the audit log.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from auth.claims import Claims
from handlers.admin.access import admin_claims, take_admin_action
from handlers.admin.alerts import Alerts
from handlers.admin.answers import (
    Alert,
    AlertList,
    AuditEntry,
    AuditLog,
    Recalculated,
    SessionDeleted,
    SessionPage,
    SessionRow,
)
from handlers.admin.config import AdminConfig
from handlers.admin.deletion import SessionDeleter
from handlers.admin.nodes import NodeHeartbeat
from handlers.admin.requests import (
    AuditQuery,
    DeleteSession,
    DetailQuery,
    NoFields,
    SessionsQuery,
    parse_body,
    parse_query,
)
from handlers.context import Services
from handlers.http_common import guarded, json_body
from handlers.ids import parse_session_id
from protocol.errors import CodedError, ErrorCode
from storage.admin.repository import AdminStore, ListQuery
from storage.admin.recalc import AdminRecalc
from storage.patterns.remix_tree import RemixTree


class AdminRoutes:
    """The admin JSON API."""

    def __init__(
        self,
        services: Services,
        *,
        store: AdminStore,
        recalc: AdminRecalc,
        config: AdminConfig,
        nodes: NodeHeartbeat,
        alerts: Alerts,
        tree: RemixTree,
        deleter: SessionDeleter,
        sessions_query: type[SessionsQuery] = SessionsQuery,
    ) -> None:
        self._s = services
        self._sessions_query = sessions_query  # requests.sessions_query_for: kind is an installed one
        self._store = store
        self._tree = tree
        self._deleter = deleter
        self._recalc = recalc
        self._config = config
        self._nodes = nodes
        self._alerts = alerts

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``."""
        app.router.add_get("/admin/metrics", guarded(self.metrics))
        app.router.add_get("/admin/sessions", guarded(self.sessions))
        app.router.add_get("/admin/sessions/{session_id}", guarded(self.detail))
        app.router.add_delete("/admin/sessions/{session_id}", guarded(self.delete))
        app.router.add_post("/admin/recalculate", guarded(self.recalculate))
        app.router.add_get("/admin/audit", guarded(self.audit))
        app.router.add_get("/admin/alerts", guarded(self.alerts))

    async def _admin(self, request: web.Request) -> Claims:
        return await admin_claims(request, self._s)

    async def _action_allowed(self, claims: Claims) -> None:
        await take_admin_action(self._s, claims, per_min=self._config.actions_per_min)

    async def metrics(self, request: web.Request) -> web.Response:
        """Counts per kind and in total, cost estimate, nodes and alerts."""
        await self._admin(request)
        parse_query(NoFields, request.query)
        counts = await self._store.counts(self._s.kinds.names())
        ops = await self._store.operations()
        rates = self._config.rates()
        fraction = self._store.month_fraction()
        kinds = {
            name: {
                **figures,
                "monthly_cost": self._store.monthly_cost(
                    figures["storage_bytes"] + figures["file_bytes"], {}, rates, month_fraction=fraction
                ),
            }
            for name, figures in counts.items()
            if name != "*"
        }
        node_list = await self._nodes.nodes()
        total = counts["*"]
        stored = total["storage_bytes"] + total["file_bytes"]
        cost = self._store.monthly_cost(stored, ops, rates, month_fraction=fraction)
        return web.json_response(
            {
                "generated_at": self._s.clock.now_ms(),
                "orphan_days": self._store.orphan_days,
                **seed_figures(total, cost),
                "total": {
                    **total,
                    "operations_this_month": ops,
                    "deepest_remix": await self._store.remix_depth(),
                    "monthly_cost": cost,
                },
                "kinds": kinds,
                "nodes": node_list,
                "alerts": await self._alerts.check(node_list),
            }
        )

    async def sessions(self, request: web.Request) -> web.Response:
        """One page of sessions: ``{sessions, next_cursor, scanned}``."""
        await self._admin(request)
        q = parse_query(self._sessions_query, request.query)
        query = ListQuery(
            sort=q.sort,
            order=q.order,
            kind=q.kind or "",
            state=q.wanted_state,
            created_from_ms=q.created_from,
            created_to_ms=q.created_to,
            owner=q.owner or "",
            limit=q.limit,
            cursor=q.cursor or "",
        )
        rows, next_cursor, scanned = await self._store.page(query)
        listed = [SessionRow.model_validate(self._row(row)) for row in rows]
        return web.json_response(SessionPage(sessions=listed, next_cursor=next_cursor, scanned=scanned).wire())

    def _row(self, row: dict[str, Any]) -> dict[str, Any]:
        record = row.pop("record")
        summary = self._s.kinds.summarise(record) or {}
        return {**row, "title": summary.get("title", ""), "url": summary.get("url", "")}

    async def detail(self, request: web.Request) -> web.Response:
        """One session: its record, admin figures, log position, latest events, remix tree."""
        await self._admin(request)
        session_id = parse_session_id(request.match_info["session_id"])
        q = parse_query(DetailQuery, request.query)
        (row,) = await self._store.describe([session_id])
        if row is None:
            raise CodedError(ErrorCode.SESSION_NOT_FOUND, "no such session")
        record = dict(row["record"])
        position = await self._s.log.position(session_id)
        return web.json_response(
            {
                **self._row(row),
                "session": record,
                "epoch": position.epoch,
                "offset": position.offset,
                "events": await self._store.events(session_id, limit=q.events) if q.events else [],
                "remix": {
                    "remix_count": row["remix_count"],
                    "ancestors": await self._tree.ancestors(session_id),
                    "descendants": await self._tree.descendants(session_id),
                },
            }
        )

    async def delete(self, request: web.Request) -> web.Response:
        """Delete a session of any kind; the body repeats its id as the confirmation."""
        claims = await self._admin(request)
        session_id = parse_session_id(request.match_info["session_id"])
        body = parse_body(DeleteSession, await json_body(request, max_bytes=self._s.limits.max_payload_bytes))
        if body.confirm.strip().lower() != session_id:
            raise CodedError(ErrorCode.PRECONDITION_FAILED, "confirm must repeat the session id")
        await self._s.kinds.resolve(session_id)  # session_not_found before the rate limit counts
        await self._action_allowed(claims)
        deleted = await self._deleter.delete(session_id, actor=claims.sub)
        await self._store.audit(
            actor=claims.sub, action="delete_session", target=session_id, detail=self._deleter.summary(deleted)
        )
        return web.json_response(SessionDeleted(deleted=session_id, kind=deleted.kind, offset=deleted.offset).wire())

    async def recalculate(self, request: web.Request) -> web.Response:
        """Rebuild the counters and indexes from the data; report the drift corrected."""
        claims = await self._admin(request)
        parse_body(NoFields, await json_body(request, max_bytes=1024, optional=True))
        await self._action_allowed(claims)
        drift = (await self._recalc.recalculate()).as_dict()
        await self._store.audit(actor=claims.sub, action="recalculate", target="*", detail=drift)
        return web.json_response(Recalculated.model_validate(drift).wire())

    async def audit(self, request: web.Request) -> web.Response:
        """The latest audit entries, newest first."""
        await self._admin(request)
        q = parse_query(AuditQuery, request.query)
        entries = [AuditEntry.model_validate(entry) for entry in await self._store.audit_entries(limit=q.limit)]
        return web.json_response(AuditLog(entries=entries).wire())

    async def alerts(self, request: web.Request) -> web.Response:
        """The alerts raised now."""
        await self._admin(request)
        parse_query(NoFields, request.query)
        alerts = [Alert.model_validate(alert) for alert in await self._alerts.check()]
        return web.json_response(AlertList(alerts=alerts).wire())


def seed_figures(total: dict[str, Any], cost: dict[str, float]) -> dict[str, Any]:
    """The totals in the shape of seed 001's dashboard endpoint (``sessions``, ``storage``,
    ``costs``), beside this server's own ``total``: a client written against the seed reads them."""
    return {
        "sessions": {
            "total": total["sessions"],
            "activeToday": total["active"],
            "createdToday": total["created_today"],
            "orphaned90Days": total["orphaned"],
        },
        "storage": {"totalBytes": total["storage_bytes"], "averageBytes": total["average_bytes"]},
        "costs": {
            "storageMonthly": cost["storage"],
            "estimatedReadsMonthly": cost["reads"],
            "estimatedWritesMonthly": cost["writes"],
        },
    }
