"""``POST /api/auth/guest``: a short-lived token for a browser without an account."""

from __future__ import annotations

import uuid

from aiohttp import web

from auth.claims import GUEST_PERMISSIONS
from handlers.context import Services
from handlers.errors import ProtocolError
from handlers.http_common import guarded


class AuthRoutes:
    """Guest token issue."""

    def __init__(self, services: Services) -> None:
        self._s = services

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``."""
        app.router.add_post("/api/auth/guest", guarded(self.guest))

    async def guest(self, request: web.Request) -> web.Response:
        """Issue a guest token (rate limited per client address)."""
        allowed = await self._s.limiter.hit(
            "guest", request.remote or "unknown", limit=self._s.limits.guests_per_min, window_s=60
        )
        if not allowed:
            raise ProtocolError("rate_limited", "too many guest tokens from this address; wait a minute")
        user_id = f"guest-{uuid.uuid4().hex}"
        token, exp = self._s.tokens.mint(
            user_id=user_id,
            now_s=self._s.clock.now_s(),
            ttl_s=self._s.limits.guest_token_ttl_s,
            perms=GUEST_PERMISSIONS,
            name="Guest",
            guest=True,
        )
        return web.json_response({"token": token, "user_id": user_id, "expires_at": exp}, status=201)
