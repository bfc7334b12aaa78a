"""The one injectable clock: every timestamp sessionhub stores comes from here.

Every node of one Redis judges time on that Redis' clock, not its own: a session written by one
node is swept, resumed or measured by another, and two hosts' clocks a minute apart made a node
ahead sweep every live listening session the others wrote as silent, and a stream paused through
a node behind end its segment before it began (a negative length). ``offset_ms`` is how far this
host's clock is behind Redis' (``TIME``), set by :func:`follow_redis` at start-up and every
:data:`FOLLOW_EVERY_S` after; stores are still taken from this one clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# How often a node reads Redis' clock again (a host's clock drifts a few ms a minute, and NTP
# may step it).
FOLLOW_EVERY_S = 30.0
# A difference under this is not followed: the reading's own error (half the round trip) is
# about that, and every small step would move stored times back and forth by a few ms.
FOLLOW_TOLERANCE_MS = 25
# A host this far off Redis' clock is said in the log (the node follows Redis' all the same).
WARN_OFF_BY_MS = 1000
# Readings per round: the one with the shortest round trip is kept.
READINGS = 3
# A round whose best round trip is longer says nothing (its error is half of it: a Redis busy
# with a script or a fork answered 1.5 s late and moved every node's clock 0.75 s back).
MAX_TRIP_MS = 100.0


@dataclass(slots=True)
class Clock:
    """Wall clock in unix milliseconds, on Redis' time; ``shift_ms`` lets tests move time forward."""

    shift_ms: int = field(default=0)
    offset_ms: int = field(default=0)

    def now_ms(self) -> int:
        """Current time, unix milliseconds."""
        return int(self.host_s() * 1000) + self.offset_ms + self.shift_ms

    def now_s(self) -> float:
        """Current time, unix seconds."""
        return self.host_s() + (self.offset_ms + self.shift_ms) / 1000

    def host_s(self) -> float:
        """This host's own clock, unix seconds (what ``offset_ms`` corrects)."""
        return time.time()

    @staticmethod
    def monotonic_s() -> float:
        """Seconds on a clock that never jumps (for rates and intervals, not timestamps)."""
        return time.monotonic()


async def redis_offset_ms(clock: Clock, redis: Any) -> int | None:
    """How far ``clock``'s host is behind Redis' ``TIME``, in ms (negative: ahead), read
    :data:`READINGS` times and taken from the reading with the shortest round trip; None when
    even that one took over :data:`MAX_TRIP_MS`."""
    best: tuple[float, float] | None = None  # (round trip, offset), in ms
    for _ in range(READINGS):
        before = clock.host_s()
        seconds, micros = await redis.time()
        after = clock.host_s()
        offset = int(seconds) * 1000 + int(micros) / 1000 - (before + after) / 2 * 1000
        trip = (after - before) * 1000
        if best is None or trip < best[0]:
            best = (trip, offset)
    assert best is not None
    return round(best[1]) if best[0] <= MAX_TRIP_MS else None


async def follow_redis(clock: Clock, redis: Any) -> None:
    """Set ``clock.offset_ms`` from Redis' clock when it differs by more than the tolerance."""
    offset = await redis_offset_ms(clock, redis)
    if offset is None or abs(offset - clock.offset_ms) <= FOLLOW_TOLERANCE_MS:
        return
    if abs(offset) >= WARN_OFF_BY_MS:
        log.warning(
            "this host's clock is %.1f s %s Redis'; sessionhub keeps Redis' time (sync the host's clock with NTP)",
            abs(offset) / 1000,
            "behind" if offset > 0 else "ahead of",
        )
    clock.offset_ms = offset


async def keep_following(clock: Clock, redis: Any, *, every_s: float = FOLLOW_EVERY_S) -> None:
    """:func:`follow_redis` every ``every_s`` until cancelled; a failed reading keeps the last."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await follow_redis(clock, redis)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis away: the last offset holds until it answers again
            log.debug("reading Redis' clock failed: %s", exc)
