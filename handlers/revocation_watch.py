"""Keeps the node's list of signed-out devices current, and disconnects their sockets.

Access tokens are verified without a Redis round trip (``auth.tokens``); this loop is the
cheap cache that lets every node refuse a revoked device's tokens within ``revocation_poll_s``
of the revocation, long before the tokens expire.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from handlers.background import every, for_app_lifetime
from handlers.connection import Connections
from handlers.context import Services
from handlers.log_throttle import LogThrottle
from protocol.events import PERMISSIONS_WITHDRAWN, SIGNED_OUT
from storage.identity.repository import Position, parse_admin_withdrawn, parse_signed_out

log = logging.getLogger(__name__)
# An unexpected failure of a round is logged once with its traceback, then counted (the loop
# goes on at its interval, which may be short).
_failed = LogThrottle(log)

NO_EXPIRY_MS = 2**63  # later than any revocation's end


class RevocationWatch:
    """Polls the revoked families every ``interval_s``; tells and drops their open sockets."""

    def __init__(self, services: Services, connections: Connections, sio: Any, *, interval_s: float) -> None:
        self._s = services
        self._connections = connections
        self._sio = sio
        self.interval_s = interval_s
        self._position: Position | None = None  # None: read the whole set next
        # family id (or a user's sign-out everywhere, repository.signed_out_entry) -> until when
        # (ms) its tokens are refused
        self._until: dict[str, int] = {}
        self._next_expiry_ms = NO_EXPIRY_MS  # the earliest until of _until

    def register(self, app: web.Application) -> None:
        """Run the watch for the app's lifetime."""
        for_app_lifetime(app, self._watch_forever)

    async def _watch_forever(self) -> None:
        await every(lambda: self.interval_s, self.poll, what="revoked devices", failed=_failed, away=log)

    async def poll(self) -> None:
        """Adopt the revocations made since the last poll, then sign out the sockets of the
        devices newly revoked.

        The whole set is read at the start, and again when the log cannot say what was missed
        (trimmed past this node's place, or replaced: a Redis that came back without it); else
        only the log's entries after the last one read, one small read when there are none.
        Reading the whole set every poll cost every node O(revocations) each ``interval_s``.
        """
        now_ms = self._s.clock.now_ms()
        known = self._until
        fresh = None if self._position is None else await self._s.identities.revoked_since(self._position)
        if fresh is None:
            fresh = await self._s.identities.revoked_all()
            # Revocations this node knows, still in force, that Redis no longer holds: restored
            # from an older backup, a failover to a replica behind, a flush. Forgotten here too
            # before, signed-out devices and withdrawn admins were let in again (audit "restore"):
            # kept, and applied again in Redis for every node.
            forgotten = {e: until for e, until in known.items() if until > now_ms and e not in fresh.until}
            self._until = dict(forgotten)
            self._next_expiry_ms = min(forgotten.values(), default=NO_EXPIRY_MS)
            if forgotten:
                log.warning(
                    "Redis no longer holds %d revocation(s) still in force (restored from an older backup? "
                    "failed over to a replica behind?): applied again",
                    len(forgotten),
                )
                await self._s.identities.reapply(forgotten)
        self._position = fresh.position
        new = frozenset(family for family in fresh.until if family not in known)
        changed = self._until is not known or bool(new)
        for family, until_ms in fresh.until.items():
            self._until[family] = max(self._until.get(family, 0), until_ms)
            self._next_expiry_ms = min(self._next_expiry_ms, until_ms)
        # Past its time a revocation is over (no access token of the family lives that long).
        # Looked for only once one is due: a quiet poll costs no pass over the set either.
        if self._next_expiry_ms <= now_ms:
            for family in [family for family, until_ms in self._until.items() if until_ms <= now_ms]:
                del self._until[family]
            self._next_expiry_ms = min(self._until.values(), default=NO_EXPIRY_MS)
            changed = True
        if changed:
            self._adopt()
        users = frozenset(filter(None, map(parse_signed_out, new)))
        await self._sign_out(self._connections.of_families(new), "this device was signed out")
        await self._sign_out(self._connections.of_bare_guests(users), "this identity was signed out everywhere")
        withdrawn = _latest(filter(None, map(parse_admin_withdrawn, new)))
        for sid in self._connections.of_withdrawn_admins(withdrawn):
            message = "the admin permission was withdrawn; connect again with a new token"
            await self._sio.emit(PERMISSIONS_WITHDRAWN, {"error": "unauthorized", "message": message}, to=sid)
            await self._sio.disconnect(sid)

    def _adopt(self) -> None:
        """Hand the token service the devices signed out, the users signed out everywhere and
        the admin permissions withdrawn."""
        families, users, withdrawals = set(), set(), []
        for entry in self._until:
            user = parse_signed_out(entry)
            withdrawal = None if user else parse_admin_withdrawn(entry)
            if user is not None:
                users.add(user)
            elif withdrawal is not None:
                withdrawals.append(withdrawal)
            else:
                families.add(entry)
        self._s.tokens.revoked_families = frozenset(families)
        self._s.tokens.signed_out_users = frozenset(users)
        self._s.tokens.admin_withdrawn = _latest(withdrawals)

    async def _sign_out(self, sids: list[str], why: str) -> None:
        for sid in sids:
            # Told first, so that a page can say why instead of retrying with a dead token.
            await self._sio.emit(SIGNED_OUT, {"error": "unauthorized", "message": why}, to=sid)
            await self._sio.disconnect(sid)


def _latest(withdrawals: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Each user's latest withdrawal (s): a token issued by then is refused its admin."""
    latest: dict[str, int] = {}
    for user, at_s in withdrawals:
        latest[user] = max(latest.get(user, -1), at_s)
    return latest
