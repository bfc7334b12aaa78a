"""The day's cap on clips the guests of one client address store, over every stream session.

Each session holds at most ``max_per_address`` clips from the guests of one address, but guests
are free to mint and every address may make 500 sessions a day: measured, a clip with a
100-character note kept ~700 bytes of Redis (its record, submission id and counts) besides the
session's log, and one address's guests could store 1,000 clips in each of 500 sessions a day
(~350 MB), kept as long as the streams. This counts a guest's stored clips per address per UTC
day (``SESSIONHUB_CLIPS_MAX_PER_ADDRESS_PER_DAY``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from auth.claims import Claims
from protocol.errors import CodedError, ErrorCode
from storage.ratelimit import DAY_S, UNCOUNTED, Counted, Refused, RateLimiter
from storage.streams.repository import Submission

# Counted per client address (an IPv6 client by its /64) per UTC day, guests only.
BUCKET = "clips_day"
# A node takes a guest address's clips from Redis this many at a time and hands them out itself:
# a raid of a thousand guest clicks a second paid a MULTI/EXEC round trip each (the click's ack
# p50 went from 1.1 to 2.0 ms and its p99 past 100 ms in bench/clips.py). At most a 64th of the
# cap, so that the clips a node holds unused (they run out with the day) cost an address little;
# a small cap is counted exactly (one at a time).
BLOCK_MAX = 32
# Addresses a node keeps unused clips for, today; past it the reserve starts again (what it held
# is lost to those addresses: counted in Redis, never stored, the safe side of the cap).
RESERVES_MAX = 50_000


class ClipsDayCap:
    """``limit`` clips a day stored by the guests of one address, over every node."""

    def __init__(self, limiter: RateLimiter, limit: int) -> None:
        self.limiter = limiter
        self.limit = limit
        self._block = max(1, min(BLOCK_MAX, limit // 64))
        self._reserve: dict[str, int] = {}  # a day's counter key -> clips taken and not handed out

    async def storing(
        self, claims: Claims, address: str, submit: Callable[[bool], Awaitable[Submission]]
    ) -> Submission:
        """Run ``submit(may_add)`` with a guest's clip counted first, given back when nothing was
        stored (a retry, a refusal, a failure). Clips are taken from the address's day counter a
        block at a time and handed out here (:data:`BLOCK_MAX`).

        Past the day's ``limit`` the click still runs, allowed to add nothing (the session's
        cap given as 0): a retry of a stored submission is answered as before, a refusal the
        script finds first (the state, the cooldown, a block) is said as before, and a new clip
        is refused ``rate_limited`` with ``retry_after_s`` to the day's end, nothing stored.
        """
        if not claims.guest:
            return await submit(True)
        taken = await self._take(address)
        if isinstance(taken, Refused):
            try:
                return await submit(False)
            except CodedError as error:
                if error.code is not ErrorCode.LIMIT_REACHED:
                    raise
                raise CodedError(
                    ErrorCode.RATE_LIMITED,
                    f"at most {self.limit} clips a day from this address; try again tomorrow",
                    retry_after_s=taken.retry_after_s,
                ) from None
        try:
            result = await submit(True)
        except BaseException:
            self._give_back(taken)
            raise
        if not result.created:
            self._give_back(taken)
        return result

    async def _take(self, address: str) -> Counted | Refused:
        reserve = self._reserve
        key = self.limiter.counter_key(BUCKET, address, window_s=DAY_S)
        if reserve.get(key, 0) > 0:
            reserve[key] -= 1
            return Counted(key)
        taken = await self.limiter.take_block(BUCKET, address, want=self._block, limit=self.limit, window_s=DAY_S)
        if isinstance(taken, Refused):
            return taken
        counted, count = taken
        if counted is UNCOUNTED:
            return counted  # its counter's shard away (storage.ratelimit): nothing to reserve
        if len(reserve) >= RESERVES_MAX:
            reserve.clear()  # yesterday's keys with them
        reserve[counted.key] = reserve.get(counted.key, 0) + count - 1
        return counted

    def _give_back(self, counted: Counted) -> None:
        """Back to this node's reserve of that day (not to Redis: the next click takes it)."""
        if counted is UNCOUNTED:
            return
        self._reserve[counted.key] = self._reserve.get(counted.key, 0) + 1
