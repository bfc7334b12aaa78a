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
        return await self.wait_s(bucket, subject, limit=limit, window_s=window_s) == 0

    async def wait_s(self, bucket: str, subject: str, *, limit: int, window_s: int) -> int:
        """Record one hit; 0 when it is within the limit, else the whole seconds (at least 1,
        rounded up) until the window it was counted in ends: when a hit is counted afresh."""
        now_ms = self._clock.now_ms()
        window_ms = window_s * 1000
        window = now_ms // window_ms
        key = self._keys.rate(bucket, subject, window)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, window_s * 2)
            count, _ = await pipe.execute()
        if int(count) <= limit:
            return 0
        left_ms = (window + 1) * window_ms - now_ms
        return max(1, -(-left_ms // 1000))
