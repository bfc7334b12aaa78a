"""``GET /api/me/sessions``: the caller's recent sessions of every kind (the landing page's list)."""

from __future__ import annotations

from aiohttp import web

from handlers.context import Services
from handlers.http_common import bearer_claims, guarded, query_int


class HomeRoutes:
    """What the front door shows a signed-in user."""

    def __init__(self, services: Services) -> None:
        self._s = services

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``."""
        app.router.add_get("/api/me/sessions", guarded(self.recent))

    async def recent(self, request: web.Request) -> web.Response:
        """The caller's sessions of every registered kind, newest first (``?limit=`` 1..list limit)."""
        claims = bearer_claims(request, self._s.tokens, self._s.clock)
        limit = query_int(request, "limit", default=20, low=1, high=self._s.limits.list_limit)
        records = await self._s.sessions.recent(claims.sub, limit=limit)
        entries = [entry for entry in map(self._s.kinds.summarise, records) if entry is not None]
        return web.json_response({"sessions": entries, "kinds": self._s.kinds.names()})
