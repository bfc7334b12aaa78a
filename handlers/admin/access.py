"""The admin check every admin route and page call makes: a bearer token with ``admin``."""

from __future__ import annotations

from aiohttp import web

from auth.claims import Claims, Permission
from handlers.context import Services
from handlers.http_common import bearer_claims
from protocol.errors import CodedError, ErrorCode


def admin_claims(request: web.Request, services: Services) -> Claims:
    """The caller's claims: ``unauthorized`` without a valid token, ``forbidden`` without ``admin``."""
    claims = bearer_claims(request, services.tokens, services.clock)
    if Permission.ADMIN not in claims.perms:
        raise CodedError(ErrorCode.FORBIDDEN, "the admin permission is required")
    return claims
