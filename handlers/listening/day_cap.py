"""The day's cap on listening sessions the guests of one client address add to their histories.

A guest is free to mint (``SESSIONHUB_GUESTS_PER_DAY``, 1000 a day per address) and each one's
history held up to ``max_sessions`` (100,000) sessions and ``max_items`` (10,000) items with
their metadata, kept ``guest_idle_s`` (30 days) after its last visit: measured, one guest
uploading over one HTTP connection stored ~5.7 KB of Redis per session (a new item's metadata
at its size limits) at ~700 sessions a second, so one address could fill ~100 MB per guest in
minutes, times a thousand guests a day. Only a session that is *added* is counted (a start, an
upload): extensions, resumes, pauses, repeats and deletions store nothing new and never are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from auth.claims import Claims
from protocol.errors import CodedError, ErrorCode
from storage.listening.model import Outcome
from storage.ratelimit import DAY_S, Refused, RateLimiter

# Counted per client address (an IPv6 client by its /64) per UTC day, guests only.
BUCKET = "listening_add_day"
# The outcomes that stored a new session; any other gives its count back.
ADDED = frozenset({"started", "uploaded"})


@dataclass(frozen=True, slots=True)
class GuestDayCap:
    """``limit`` sessions a day added by the guests of one address (an account the operator
    issued is held by its per-history caps alone, as for session creates)."""

    limiter: RateLimiter
    limit: int

    async def adding(self, claims: Claims, address: str, write: Callable[[bool], Awaitable[Outcome]]) -> Outcome:
        """Run ``write(may_add)`` under the cap.

        A guest's write runs first with ``may_add=False``: a report that extends, resumes or
        finalizes, an upload repeated or too short, goes through at once, uncounted (one script,
        as before: a playing player reports every few seconds). One that would add a session is
        refused ``limit_reached`` by its script with nothing changed; it is then counted, and
        run again allowed to add -- or, past the day's ``limit``, refused ``rate_limited`` with
        ``retry_after_s`` to the day's end, nothing stored. A count whose write added nothing
        (a real per-history limit, a conflict, a race) is given back.
        """
        if not claims.guest:
            return await write(True)
        try:
            return await write(False)
        except CodedError as error:
            if error.code is not ErrorCode.LIMIT_REACHED:
                raise
        taken = await self.limiter.take(BUCKET, address, limit=self.limit, window_s=DAY_S)
        if isinstance(taken, Refused):
            raise CodedError(
                ErrorCode.RATE_LIMITED,
                f"at most {self.limit} listening sessions a day from this address; try again tomorrow",
                retry_after_s=taken.retry_after_s,
            )
        try:
            outcome = await write(True)
        except BaseException:
            await self.limiter.give_back(taken)
            raise
        if outcome.action not in ADDED:
            await self.limiter.give_back(taken)
        return outcome
