"""The admin check every admin route and page call makes (a bearer token with ``admin``), and
the rate of admin actions that change data."""

from __future__ import annotations

from aiohttp import web

from auth.claims import Claims, Permission
from handlers.context import Services
from handlers.http_common import bearer_claims
from handlers.rate_limit import within
from protocol.errors import CodedError, ErrorCode


def admin_claims(request: web.Request, services: Services) -> Claims:
    """The caller's claims: ``unauthorized`` without a valid token, ``forbidden`` without ``admin``."""
    claims = bearer_claims(request, services.tokens, services.clock)
    if Permission.ADMIN not in claims.perms:
        raise CodedError(ErrorCode.FORBIDDEN, "the admin permission is required")
    return claims


async def take_admin_action(services: Services, claims: Claims, *, per_min: int) -> None:
    """Count one data-changing admin action of ``claims``; ``rate_limited`` past ``per_min``."""
    message = "too many admin actions; wait a minute"
    await within(services.limiter, "admin_action", claims.sub, limit=per_min, window_s=60, message=message)
