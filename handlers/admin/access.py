"""The admin check every admin route and page call makes (a bearer token with ``admin``), and
the rate of admin actions that change data."""

from __future__ import annotations

from aiohttp import web

from auth.claims import Claims, Permission
from handlers.context import Services
from handlers.http_common import bearer_claims
from handlers.rate_limit import within
from protocol.errors import CodedError, ErrorCode


async def admin_claims(request: web.Request, services: Services) -> Claims:
    """The caller's claims: ``unauthorized`` without a valid token, ``forbidden`` without ``admin``.

    A device's token (``fam``: minted by a refresh) carries ``admin`` as the user's profile had it
    then: it is checked against the profile now, so ``sessionhub admin revoke`` takes effect at
    once, not when the token runs out (an hour of delete and export rights: audit "operatorday").
    A token minted by ``sessionhub token`` has no device and no grant behind it: its word stands
    until it expires, as the operator who minted it chose.
    """
    claims = bearer_claims(request, services.tokens, services.clock)
    if Permission.ADMIN not in claims.perms:
        raise CodedError(ErrorCode.FORBIDDEN, "the admin permission is required")
    if claims.fam and not await services.identities.admin_granted(claims.sub):
        raise CodedError(ErrorCode.FORBIDDEN, "the admin permission was withdrawn", reason="withdrawn")
    return claims


async def take_admin_action(services: Services, claims: Claims, *, per_min: int) -> None:
    """Count one data-changing admin action of ``claims``; ``rate_limited`` past ``per_min``."""
    message = "too many admin actions; wait a minute"
    await within(services.limiter, "admin_action", claims.sub, limit=per_min, window_s=60, message=message)
