"""Fixed-window rate limits shared by every node (counters live in Redis)."""

from __future__ import annotations

from redis.asyncio import Redis

from storage.clock import Clock
from storage.keys import Keys


class RateLimiter:
    """Counts hits per subject per window; refuses past ``limit``."""

    def __init__(self, *, redis: Redis, keys: Keys, clock: Clock) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock

    async def hit(self, bucket: str, subject: str, *, limit: int, window_s: int) -> bool:
        """Record one hit; True when it is within the limit."""
        window = self._clock.now_ms() // (window_s * 1000)
        key = self._keys.rate(bucket, subject, window)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, window_s * 2)
            count, _ = await pipe.execute()
        return int(count) <= limit
