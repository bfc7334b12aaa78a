"""``renew_token``: a connection takes its identity's next access token without being made again.

An access token lives an hour by default, and a page stays open longer. Before this event the
only way on was to disconnect and connect with a fresh token, and a connection's close is not
nothing: the recording lease it held ended (so every other tab saw the session paused, then
recording again once the recorder had connected), its pattern presence left and came back, and
every subscription read its replay again. Here the connection stays, and only its token changes.

Only the same identity may renew: the new token must verify as a connect's would (signature,
algorithm, dates, a device not signed out) and name the same user, device, kind and permissions.
Anything else is another identity (a sign-in, a guest who signed in) and is refused
``unauthorized``: that one connects again, as before, and every access is checked anew.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from auth.claims import Claims
from handlers.connection import Connection
from handlers.context import Services
from handlers.payloads import RenewToken, validate
from handlers.socket_router import SocketRouter
from protocol.errors import CodedError, ErrorCode

EVENT = "renew_token"


def same_identity(old: Claims, new: Claims) -> bool:
    """Whether ``new`` is the same identity as ``old``, a later token of it: everything that
    decides access is unchanged (the display name may differ: a rename since)."""
    if frozenset(new.perms) != frozenset(old.perms):  # the same permissions, in any order
        return False
    return replace(new, exp=old.exp, name=old.name, perms=old.perms, iat=old.iat) == old


class TokenRenewal:
    """Replaces a connection's claims by a later token's of the same identity."""

    def __init__(self, services: Services) -> None:
        self._s = services

    def register(self, router: SocketRouter) -> None:
        """Attach the event to ``router``: checked as every event is, but for the token's expiry
        (renewing an expired one is what it is for)."""
        router.on(EVENT, self.renew, session_scoped=False, token_checked=False)

    async def renew(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """``{"user_id", "expires_at"}`` once ``conn`` goes by the new token."""
        token = validate(RenewToken, data).token
        await self._s.tokens.learn_key(token)  # an external token signed with a key rotated in
        claims = self._s.tokens.verify(token)  # unauthorized: forged, expired, signed out
        if claims.exp <= self._s.clock.now_s():
            raise CodedError(ErrorCode.UNAUTHORIZED, "token expired")
        if not same_identity(conn.claims, claims):
            raise CodedError(ErrorCode.UNAUTHORIZED, "the token is another identity's; connect again with it")
        conn.claims = claims
        conn.derived.clear()  # derived from the claims: made again from the new ones when asked
        return {"user_id": claims.sub, "expires_at": claims.exp}
