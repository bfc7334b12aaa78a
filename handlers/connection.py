"""Per-connection state: who is connected, and how fast they may send."""

from __future__ import annotations

import math

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from auth.claims import Claims, Permission

# What a connection leaves behind to undo when it closes (a pattern player's presence).
Farewell = Callable[[], Awaitable[object]]


@dataclass(slots=True)
class TokenBucket:
    """Events allowed per second with a burst; refilled lazily on each take."""

    rate_per_s: float
    burst: int
    tokens: float = -1.0
    updated_s: float = 0.0

    def take(self, now_s: float) -> bool:
        """Spend one token; False when the connection is over its rate."""
        if not self.peek(now_s):
            return False
        self.tokens -= 1.0
        return True

    def peek(self, now_s: float) -> bool:
        """Whether a token is left (refilled to ``now_s``), without spending it."""
        if self.tokens < 0:
            self.tokens, self.updated_s = float(self.burst), now_s
        self.tokens = min(float(self.burst), self.tokens + (now_s - self.updated_s) * self.rate_per_s)
        self.updated_s = now_s
        return self.tokens >= 1.0

    def wait_s(self) -> float:
        """Seconds until the next token, as of the last take or peek (milliseconds, rounded up):
        what a refused event's ack tells the client to wait."""
        return max(0.001, math.ceil(max(0.0, 1.0 - self.tokens) / self.rate_per_s * 1000) / 1000)


@dataclass(slots=True)
class FloodCount:
    """Events refused over the rate in the current window (a fixed window: one comparison and
    one addition per refusal, so counting costs a flooder nothing worth having)."""

    limit: int
    window_s: float
    count: int = 0
    since_s: float = -1.0

    def refused(self, now_s: float) -> bool:
        """Count one refusal; True when it makes ``limit`` within the window (time to cut)."""
        if self.since_s < 0 or now_s - self.since_s >= self.window_s:
            self.count, self.since_s = 0, now_s
        self.count += 1
        return self.count >= self.limit


# The environ key of a transport's :class:`Budget`. python-socketio hands every Socket.IO connect
# of one Engine.IO connection the same environ dict, kept for that connection's life.
BUDGET_KEY = "sessionhub.budget"


@dataclass(slots=True)
class Budget:
    """What one client may spend, kept by its Engine.IO connection rather than by each Socket.IO
    connection on it: a namespace disconnect and connect again (``41``, ``40``) on one transport
    got a full bucket, a flood count at zero and fresh retry identities each time, which made
    every per-connection cap a per-cycle one."""

    bucket: TokenBucket
    flood: FloodCount
    client_ids: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, environ: dict[str, Any], make: Callable[[], Budget]) -> Budget:
        """The budget of the transport ``environ`` belongs to, made (by ``make``) at its first
        connect."""
        budget = environ.get(BUDGET_KEY)
        if not isinstance(budget, Budget):
            budget = environ[BUDGET_KEY] = make()
        return budget


@dataclass(slots=True)
class Connection:
    """One Socket.IO connection's identity and rate budget."""

    sid: str
    claims: Claims
    bucket: TokenBucket
    # The client's address as the handshake saw it ('' when unknown): guests' per-address caps.
    address: str = ""
    # Run once the socket has closed, by name (a second join of one session replaces the first):
    # a pattern player's presence, the recording lease it holds.
    farewells: dict[str, Farewell] = field(default_factory=dict)
    # Refusals over the rate (None: not counted), and why the server cut the connection ('' while
    # it has not): its disconnect is counted under that reason.
    flood: FloodCount | None = None
    cut: str = ""
    # Values a capability derives from ``claims`` once per connection rather than once per
    # event (the voice scripts' performer: a frozen dataclass and three permission lookups, on
    # every status change). Keyed by the deriving function; cleared when the claims change (only
    # ``renew_token`` changes them, to a later token of the same identity).
    derived: dict[object, object] = field(default_factory=dict)
    # The retry identities (a pattern op's ``client_id``) this connection has used: each costs a
    # remembered key in Redis for an hour, so a connection may use only a few.
    client_ids: set[str] = field(default_factory=set)
    # Subscribes this connection has read a snapshot or replay for: its place among the waiters
    # of handlers.subscriptions (a connection that subscribed often waits behind one that has not).
    catch_ups: int = 0


class Connections:
    """The node's connected clients, by Socket.IO sid."""

    def __init__(self) -> None:
        self._by_sid: dict[str, Connection] = {}

    def add(self, connection: Connection) -> None:
        """Register a freshly authenticated connection."""
        self._by_sid[connection.sid] = connection

    def get(self, sid: str) -> Connection | None:
        """The connection, or None once it has gone."""
        return self._by_sid.get(sid)

    def remove(self, sid: str) -> bool:
        """Forget a disconnected connection; False when it was not (or no longer) known."""
        return self._by_sid.pop(sid, None) is not None

    def of_families(self, family_ids: frozenset[str]) -> list[str]:
        """Sids of the connections whose token was minted for one of these devices."""
        if not family_ids:
            return []
        return [sid for sid, c in self._by_sid.items() if c.claims.fam and c.claims.fam in family_ids]

    def of_bare_guests(self, user_ids: frozenset[str]) -> list[str]:
        """Sids of the connections of these users whose token is a guest's bound to no device."""
        if not user_ids:
            return []
        return [
            sid for sid, c in self._by_sid.items() if c.claims.sub in user_ids and c.claims.guest and not c.claims.fam
        ]

    def of_withdrawn_admins(self, withdrawn: dict[str, int]) -> list[str]:
        """Sids of the connections whose device token says admin and was issued by the time
        (s) its user's admin permission was withdrawn (``withdrawn``: user id -> that time)."""
        if not withdrawn:
            return []
        return [
            sid
            for sid, c in self._by_sid.items()
            if c.claims.fam and Permission.ADMIN in c.claims.perms and c.claims.iat <= withdrawn.get(c.claims.sub, -1)
        ]

    def __len__(self) -> int:
        return len(self._by_sid)
