"""``follow_user``: a connection follows its user's display name (every page's identity badge).

A rename (``PATCH /api/auth/me``) is announced on the user's channel (``server.active_feed``); a
connection that asks is sent each one as a ``user_renamed`` event, and its ack carries the name
as it stands once it follows, so a rename made while the page was loading is not missed. It
costs the node the user's channel (one per user here, shared with ``follow_active_session``) and
a name read per follow: nothing per event of any session.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from handlers.admission import TurnGate
from handlers.connection import Connection
from handlers.context import Services
from handlers.payloads import FollowActive, validate
from handlers.socket_router import SocketRouter

# Follows started per loop turn (handlers.admission), as follow_active_session's: every page
# follows at each connect, so clients coming back at once follow at once.
FOLLOWS_PER_TURN = 8


def name_reader(services: Services, conn: Connection) -> Callable[[], Awaitable[str]]:
    """Reads the name ``GET /api/auth/me`` answers for the connection's user: the profile's,
    else the token's (a token minted with ``--name`` for a user without a profile)."""
    claims = conn.claims

    async def read() -> str:
        return (await services.identities.profile(claims.sub)).name or claims.name

    return read


class UserEvents:
    """The user's own things a connection may follow: their name."""

    def __init__(self, services: Services) -> None:
        self._s = services
        self.admission = TurnGate(FOLLOWS_PER_TURN)

    def register(self, router: SocketRouter) -> None:
        """Attach the events to ``router``."""
        router.on("follow_user", self.follow, session_scoped=False)

    async def follow(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """``{"user_id", "name"}`` now; each later rename comes as a ``user_renamed`` event."""
        validate(FollowActive, data)  # no field either
        await self.admission.enter()
        name = await self._s.bus.follow_name(conn.claims.sub, conn.sid, name_reader(self._s, conn))
        return {"user_id": conn.claims.sub, "name": name}
