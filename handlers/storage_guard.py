"""The storage guard: no new stored things while Redis is near its memory budget.

Anonymous pattern sessions are kept for ever (orphans are flagged, never deleted), and guest
stream and voice sessions are limited only per minute: over days and addresses they can fill
Redis until every write fails (``maxmemory``, ``noeviction``) or the OS kills it. Above a
high-water share (``SESSIONHUB_STORAGE_GUARD_RATIO``) of the budget
(``SESSIONHUB_ADMIN_MEMORY_BUDGET_BYTES``, else Redis's ``maxmemory``; neither: no guard) the
routes that make *new* stored things (session creates of every kind, remixes, publishes, guest
identities) are refused ``unavailable`` with ``reason: "storage_full"`` and ``retry_after_s``,
while edits, events and reads of existing sessions (bounded per session already) go on until
Redis's own limit: the people already working are not cut off by the ones arriving.

Each node reads ``INFO memory`` at most once per ``refresh_ms`` (the injectable clock's time),
one read at a time however many requests ask at once; a read that fails keeps the last figures
for :data:`STALE_AFTER_MS`, then the guard admits (Redis not answering fails the create anyway,
and a guard that refused on no figures would turn a blip into an outage of creates).

A request waits for a read under way for :data:`READ_WAIT_S` at most, then goes by the last
figures while the read goes on: on a cluster the read asks every primary, and one that hangs
(stopped, partitioned, failing over) held every create of every shard for the client's socket
timeout, at each refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisClusterException, RedisError

from handlers.errors import STORAGE_FULL
from handlers.log_throttle import LogThrottle
from handlers.metrics import Metrics
from protocol.errors import CodedError, ErrorCode
from storage.clock import Clock
from storage.memory import READ_BOUND_S, memory_figures

log = logging.getLogger(__name__)
# A Redis that stays away would otherwise log a failed read every ``refresh_ms``.
_throttle = LogThrottle(log, level=logging.WARNING)

# How long the figures of the last good read stand in while reads fail.
STALE_AFTER_MS = 10_000
# How long a request waits for a read under way before it goes by the last figures (see above).
READ_WAIT_S = 1.0
# What a refused client is told to wait: memory is freed by an operator, not in a second.
RETRY_AFTER_S = 60
MESSAGE = "the server's storage is nearly full; nothing new can be stored now, try again later"


@dataclass(frozen=True, slots=True)
class MemoryReading:
    """Redis's memory as last read: bytes used and the budget they are held to (0: none)."""

    used_bytes: int
    budget_bytes: int
    read_at_ms: int


@dataclass(frozen=True, slots=True)
class GuardState:
    """What the admin alerts show: whether new things are refused now, and on what figures."""

    refusing: bool
    ratio: float
    used_bytes: int
    budget_bytes: int
    refused: int  # refusals by this process since it started


class StorageGuard:
    """Refuses new stored things while Redis's used memory is over ``ratio`` of its budget."""

    def __init__(
        self,
        *,
        redis: Redis,
        clock: Clock,
        metrics: Metrics,
        ratio: float,
        budget_bytes: int,
        refresh_ms: int,
        read_bound_s: float = READ_BOUND_S,
    ) -> None:
        self._redis = redis
        self._clock = clock
        self._metrics = metrics
        self.ratio = ratio
        self._budget_bytes = budget_bytes  # configured; 0: Redis's maxmemory
        self._refresh_ms = refresh_ms
        # The longest a read may take (storage.memory.READ_BOUND_S): one that never ended would
        # keep every later read from starting, for good. The memory alert's read is held to it too.
        self.read_bound_s = read_bound_s
        self._reading: MemoryReading | None = None
        self._tried_at_ms: int | None = None
        self._reading_now: asyncio.Task[None] | None = None
        self.refused = 0

    def over(self, used_bytes: int, budget_bytes: int) -> bool:
        """True when ``used_bytes`` is past the high-water mark of ``budget_bytes``."""
        return self.ratio > 0 and budget_bytes > 0 and used_bytes >= budget_bytes * self.ratio

    async def admit(self, what: str) -> None:
        """Nothing when new things may be stored; else ``unavailable`` (``storage_full``), counted
        under ``what`` (a fixed word naming the route: a bounded metric label)."""
        if self.ratio <= 0:
            return
        reading = await self._current()
        if reading is None or not self.over(reading.used_bytes, reading.budget_bytes):
            return
        self.refused += 1
        self._metrics.storage_refused(what)
        raise CodedError(ErrorCode.UNAVAILABLE, MESSAGE, reason=STORAGE_FULL, retry_after_s=RETRY_AFTER_S)

    async def state(self) -> GuardState:
        """The guard as it stands on this node (its cached figures, read again when due)."""
        reading = await self._current() if self.ratio > 0 else None
        used, budget = (reading.used_bytes, reading.budget_bytes) if reading else (0, 0)
        return GuardState(self.over(used, budget), self.ratio, used, budget, self.refused)

    async def _current(self) -> MemoryReading | None:
        """The figures, read again when the last try is ``refresh_ms`` old (one read at a time)."""
        now_ms = self._clock.now_ms()
        tried = self._tried_at_ms
        # A clock set back (tests, NTP) must not freeze the figures until it catches up.
        due = tried is None or not 0 <= now_ms - tried < self._refresh_ms
        if due and self._reading_now is None:
            self._tried_at_ms = now_ms
            self._reading_now = asyncio.create_task(self._read(now_ms))
            self._reading_now.add_done_callback(self._read_done)
        if self._reading_now is not None:
            # Everyone asking while a read runs waits for it, not for the figures it replaces,
            # within READ_WAIT_S; shielded: a request cancelled (or timed out) while it waits
            # must not cancel everyone's read.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reading_now), READ_WAIT_S)
        reading = self._reading
        if reading is None or now_ms - reading.read_at_ms > STALE_AFTER_MS:
            return None
        return reading

    @property
    def reading(self) -> bool:
        """True while a read of ``INFO memory`` is under way."""
        return self._reading_now is not None

    def _read_done(self, task: asyncio.Task[None]) -> None:
        self._reading_now = None

    async def _read(self, now_ms: int) -> None:
        try:
            figures = await memory_figures(self._redis, self._budget_bytes, self.read_bound_s)
        except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:  # cluster: no node answers
            # Redis away or refusing INFO (an ACL without it: said at start and by an alert) is a
            # fault of the world, a line without a traceback.
            _throttle.exception("storage guard: INFO memory failed; keeping the last figures", exc, expected=True)
            return
        self._reading = MemoryReading(figures.used_bytes, figures.budget_bytes, read_at_ms=now_ms)
