"""Guest identity for browsers without an account: ``/api/auth/guest`` and ``/api/auth/refresh``."""

from __future__ import annotations

import uuid

from aiohttp import web
from pydantic import BaseModel

from auth.claims import GUEST_PERMISSIONS, Permission
from handlers.context import Services
from handlers.http_common import bearer_claims, client_address, guarded, json_body
from handlers.openapi_registry import Auth, Operation, document
from handlers.payloads import OneTimeLogin, validate
from protocol.errors import CodedError, ErrorCode


class TokenAnswer(BaseModel):
    """A token issued: its user and expiry (unix s)."""

    token: str
    user_id: str
    expires_at: int


TAG = "auth"
OPERATIONS = (
    Operation(
        "post",
        "/api/auth/guest",
        "Issue a guest token (rate limited per client address)",
        tag=TAG,
        auth=Auth.NONE,
        statuses=(429, 503),
        ok=(201,),
        response=TokenAnswer,
    ),
    Operation(
        "post",
        "/api/auth/refresh",
        "A new token for the same guest, while the presented guest token is valid",
        tag=TAG,
        statuses=(403, 429, 503),
        response=TokenAnswer,
    ),
    Operation(
        "post",
        "/api/auth/one_time",
        "Exchange a /login link's one-time token for a token",
        tag=TAG,
        auth=Auth.NONE,
        body=OneTimeLogin,
        statuses=(400, 401, 413, 429, 503),
        response=TokenAnswer,
    ),
)


class AuthRoutes:
    """Guest token issue."""

    def __init__(self, services: Services) -> None:
        self._s = services

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``."""
        app.router.add_post("/api/auth/guest", guarded(self.guest))
        app.router.add_post("/api/auth/refresh", guarded(self.refresh))
        app.router.add_post("/api/auth/one_time", guarded(self.one_time))
        document(app, OPERATIONS)

    async def guest(self, request: web.Request) -> web.Response:
        """Issue a guest token (rate limited per client address)."""
        address = client_address(request, trust_forwarded_for=self._s.trust_forwarded_for)
        allowed = await self._s.limiter.hit("guest", address, limit=self._s.limits.guests_per_min, window_s=60)
        if not allowed:
            raise CodedError(ErrorCode.RATE_LIMITED, "too many guest tokens from this address; wait a minute")
        return self._issue(f"guest-{uuid.uuid4().hex}", status=201)

    async def refresh(self, request: web.Request) -> web.Response:
        """A new guest token for the same guest, while the presented one is still valid.

        Without it a guest would lose access to their own sessions when the token expires.
        """
        claims = bearer_claims(request, self._s.tokens, self._s.clock)
        if not claims.guest:
            raise CodedError(ErrorCode.FORBIDDEN, "only guest tokens are refreshed here")
        if not await self._s.limiter.hit("refresh", claims.sub, limit=self._s.limits.guests_per_min, window_s=60):
            raise CodedError(ErrorCode.RATE_LIMITED, "too many refreshes; wait a minute")
        return self._issue(claims.sub, status=200)

    async def one_time(self, request: web.Request) -> web.Response:
        """Exchange a ``/login`` link's one-time token for a token of the user who asked for it.

        The new token is capped by the asking token: same permissions, same guest mark, and an
        expiry no later than the asking token's ``exp`` (else every link would renew a token).
        """
        address = client_address(request, trust_forwarded_for=self._s.trust_forwarded_for)
        if not await self._s.limiter.hit("login", address, limit=self._s.limits.guests_per_min, window_s=60):
            raise CodedError(ErrorCode.RATE_LIMITED, "too many login attempts; wait a minute")
        body = validate(OneTimeLogin, await json_body(request, max_bytes=1024))
        claims = await self._s.login_tokens.redeem(body.token)
        if claims is None:
            raise CodedError(ErrorCode.UNAUTHORIZED, "this login link was used already or has expired")
        now_s = self._s.clock.now_s()
        ttl_s = min(self._s.limits.login_token_ttl_s, int(claims["exp"]) - int(now_s))
        if ttl_s < 1:
            raise CodedError(ErrorCode.UNAUTHORIZED, "the token that asked for this login link has expired")
        token, exp = self._s.tokens.mint(
            user_id=claims["sub"],
            now_s=now_s,
            ttl_s=ttl_s,
            perms=tuple(Permission(p) for p in claims.get("perms", ())),
            name=claims.get("name", ""),
            telegram_user_id=claims.get("telegram_user_id", ""),
            guest=bool(claims.get("guest", False)),
        )
        return web.json_response(TokenAnswer(token=token, user_id=claims["sub"], expires_at=exp).model_dump())

    def _issue(self, user_id: str, *, status: int) -> web.Response:
        token, exp = self._s.tokens.mint(
            user_id=user_id,
            now_s=self._s.clock.now_s(),
            ttl_s=self._s.limits.guest_token_ttl_s,
            perms=GUEST_PERMISSIONS,
            name="Guest",
            guest=True,
        )
        return web.json_response(TokenAnswer(token=token, user_id=user_id, expires_at=exp).model_dump(), status=status)
