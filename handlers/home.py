"""``GET /api/me/sessions``: the caller's recent sessions of every kind (the landing page's list)."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from handlers.answers import Answer
from handlers.context import Services
from handlers.http_common import bearer_claims, guarded
from handlers.openapi_registry import Operation, document
from handlers.query import QueryModel, at_most, parse_query


class RecentQuery(QueryModel):
    """``?limit=`` of the landing page's list (at most SESSIONHUB_LIST_LIMIT)."""

    limit: int = Field(default=20, ge=1)


class RecentSession(Answer):
    """A session of any kind, as the landing page lists it."""

    session_id: str
    kind: str
    created_at: int
    title: str
    url: str
    status: str | SkipJsonSchema[None] = Field(
        default=None, description="a voice session's status, a stream's state; absent for the other kinds"
    )


class RecentSessions(Answer):
    """``GET /api/me/sessions``: the caller's own sessions of every kind, newest first."""

    sessions: list[RecentSession]
    kinds: list[str] = Field(description="the kinds this server serves")


OPERATIONS = (
    Operation(
        "get",
        "/api/me/sessions",
        "The caller's recent sessions of every kind, newest first",
        tag="home",
        query=RecentQuery,
        statuses=(400, 503),
        response=RecentSessions,
    ),
)


class HomeRoutes:
    """What the front door shows a signed-in user."""

    def __init__(self, services: Services) -> None:
        self._s = services

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``."""
        app.router.add_get("/api/me/sessions", guarded(self.recent))
        document(app, OPERATIONS)

    async def recent(self, request: web.Request) -> web.Response:
        """The caller's sessions of every registered kind, newest first (``?limit=`` 1..list limit)."""
        claims = bearer_claims(request, self._s.tokens, self._s.clock)
        limit = at_most("limit", parse_query(RecentQuery, request).limit, self._s.limits.list_limit)
        records = await self._s.sessions.recent(claims.sub, limit=limit)
        entries = [RecentSession.model_validate(e) for e in map(self._s.kinds.summarise, records) if e is not None]
        return web.json_response(RecentSessions(sessions=entries, kinds=self._s.kinds.names()).wire())
