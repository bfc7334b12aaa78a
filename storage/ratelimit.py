"""Fixed-window rate limits shared by every node (counters live in Redis).

On Redis Cluster a counter lives on the shard its key hashes to, not its request's session's:
while that shard has no master (a failover's seconds), every request it counted was refused
``unavailable``, on every shard -- a whole address's writes, whichever sessions they went to
(audit "frozenmaster"). There a counter that cannot be reached counts nothing and lets the
request through: a limit is a bound on abuse, and one left open for a failover's seconds bounds
less, briefly, where refusing stopped everyone. A single Redis away fails the request anyway.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from storage.clock import Clock
from storage.failures import SHARD_AWAY
from storage.keys import Keys

log = logging.getLogger(__name__)

# A counter not reached is said at most this often (s): a failover refuses many at once.
UNCOUNTED_LOG_EVERY_S = 30.0

DAY_S = 86_400
# Anonymous session creations of every kind (patterns with their remixes and publishes, guests'
# voice and stream sessions) are counted per client address per UTC day in this one bucket,
# against one cap (SESSIONHUB_PATTERNS_CREATES_PER_DAY): a per-minute limit alone let one address
# store ~43,000 sessions a day of a kind that had no daily cap. The name is the one the pattern API
# counted under first, so a day's counts carry over an upgrade.
CREATES_DAY_BUCKET = "pattern_create_day"


@dataclass(frozen=True, slots=True)
class Counted:
    """Where a hit taken with :meth:`RateLimiter.take` was counted, to give it back."""

    key: str


# A hit let through uncounted (its counter's shard away, on a cluster): nothing to give back.
UNCOUNTED = Counted("")


@dataclass(frozen=True, slots=True)
class Refused:
    """A hit :meth:`RateLimiter.take` did not count: the seconds until its window ends."""

    retry_after_s: int


class RateLimiter:
    """Counts hits per subject per window; refuses past ``limit``."""

    def __init__(self, *, redis: Redis, keys: Keys, clock: Clock) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._open_when_away = isinstance(redis, RedisCluster)  # see the module's docstring
        self._said_at = -UNCOUNTED_LOG_EVERY_S

    def _uncounted(self, key: str, exc: Exception) -> None:
        """A counter's shard did not answer: on a cluster, say so (now and then) and let it pass."""
        if not self._open_when_away:
            raise exc
        if time.monotonic() - self._said_at >= UNCOUNTED_LOG_EVERY_S:
            self._said_at = time.monotonic()
            log.warning("a rate counter's shard does not answer (%s): requests it counts pass uncounted meanwhile", exc)
        log.debug("rate counter %s not counted: %s", key, exc)

    async def hit(self, bucket: str, subject: str, *, limit: int, window_s: int) -> bool:
        """Record one hit; True when it is within the limit."""
        return await self.wait_s(bucket, subject, limit=limit, window_s=window_s) == 0

    async def wait_s(self, bucket: str, subject: str, *, limit: int, window_s: int) -> int:
        """Record one hit; 0 when it is within the limit, else the whole seconds (at least 1,
        rounded up) until the window it was counted in ends: when a hit is counted afresh."""
        now_ms = self._clock.now_ms()
        window_ms = window_s * 1000
        window = now_ms // window_ms
        key = self._keys.rate(bucket, subject, window)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, window_s * 2)
                count, _ = await pipe.execute()
        except SHARD_AWAY as exc:
            self._uncounted(key, exc)
            return 0
        if int(count) <= limit:
            return 0
        return seconds_left(now_ms, window_ms)

    async def take(self, bucket: str, subject: str, *, limit: int, window_s: int) -> Counted | Refused:
        """Count one hit of something that may still fail (a creation): where it was counted,
        for :meth:`give_back`, or how long to wait. Unlike :meth:`wait_s`, a refused hit is not
        counted, and a hit given back frees its place: only what was made counts."""
        now_ms = self._clock.now_ms()
        window_ms = window_s * 1000
        key = self._keys.rate(bucket, subject, now_ms // window_ms)
        try:
            if await take_one(self._redis, key, limit=limit, ttl_s=window_s * 2):
                return Counted(key)
        except SHARD_AWAY as exc:
            self._uncounted(key, exc)
            return UNCOUNTED
        return Refused(seconds_left(now_ms, window_ms))

    def counter_key(self, bucket: str, subject: str, *, window_s: int) -> str:
        """The counter of ``subject`` in ``bucket`` for the window of now."""
        return self._keys.rate(bucket, subject, self._clock.now_ms() // (window_s * 1000))

    async def take_block(
        self, bucket: str, subject: str, *, want: int, limit: int, window_s: int
    ) -> tuple[Counted, int] | Refused:
        """Count up to ``want`` hits at once, as many as the window still has room for: where they
        were counted and how many (at least one), or how long to wait when none is left. For a
        caller that hands the hits out itself (``handlers.streams.day_cap``), one round trip per
        ``want`` hits instead of one per hit."""
        now_ms = self._clock.now_ms()
        window_ms = window_s * 1000
        key = self._keys.rate(bucket, subject, now_ms // window_ms)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incrby(key, want)
                pipe.expire(key, window_s * 2)
                count, _ = await pipe.execute()
        except SHARD_AWAY as exc:
            self._uncounted(key, exc)
            return UNCOUNTED, want
        over = min(want, int(count) - limit)
        if over > 0:
            await self._redis.decrby(key, over)
        if over >= want:
            return Refused(seconds_left(now_ms, window_ms))
        return Counted(key), want - max(over, 0)

    async def give_back(self, counted: Counted) -> None:
        """Uncount a hit :meth:`take` counted (to the window it was counted in, even if that
        window has turned since: a give-back to the new one would be one too many there)."""
        if counted is not UNCOUNTED:
            await self._redis.decr(counted.key)


async def take_one(redis: Redis, key: str, *, limit: int, ttl_s: int) -> bool:
    """Count one on the counter ``key``; past ``limit`` the count is given back and False
    returned. Counted before the thing it counts, so concurrent requests cannot all slip under."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, ttl_s)
        count, _ = await pipe.execute()
    if int(count) <= limit:
        return True
    await redis.decr(key)
    return False


def seconds_left(now_ms: int, window_ms: int) -> int:
    """Whole seconds (at least 1, rounded up) left in the ``window_ms`` window of ``now_ms``."""
    return max(1, -(-(window_ms - now_ms % window_ms) // 1000))
