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
from dataclasses import dataclass

from auth.claims import Claims
from protocol.errors import CodedError, ErrorCode
from storage.ratelimit import DAY_S, Refused, RateLimiter
from storage.streams.repository import Submission

# Counted per client address (an IPv6 client by its /64) per UTC day, guests only.
BUCKET = "clips_day"


@dataclass(frozen=True, slots=True)
class ClipsDayCap:
    """``limit`` clips a day stored by the guests of one address."""

    limiter: RateLimiter
    limit: int

    async def storing(
        self, claims: Claims, address: str, submit: Callable[[bool], Awaitable[Submission]]
    ) -> Submission:
        """Run ``submit(may_add)`` with a guest's clip counted first (one INCR; a click is a
        press with a cooldown, not a stream of reports), given back when nothing was stored (a
        retry, a refusal, a failure).

        Past the day's ``limit`` the click still runs, allowed to add nothing (the session's
        cap given as 0): a retry of a stored submission is answered as before, a refusal the
        script finds first (the state, the cooldown, a block) is said as before, and a new clip
        is refused ``rate_limited`` with ``retry_after_s`` to the day's end, nothing stored.
        """
        if not claims.guest:
            return await submit(True)
        taken = await self.limiter.take(BUCKET, address, limit=self.limit, window_s=DAY_S)
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
            await self.limiter.give_back(taken)
            raise
        if not result.created:
            await self.limiter.give_back(taken)
        return result
