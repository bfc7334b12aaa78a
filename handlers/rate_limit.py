"""The refusal of a fixed-window limit: ``rate_limited`` saying when the window turns.

Every per-minute limit (creates, guest tokens, refreshes, sign-ins, uploads, jobs, admin
actions...) refuses through :func:`within`, so each 429 and each ack carries ``retry_after_s``
(and an HTTP answer ``Retry-After``, handlers.errors.to_http): the seconds left in the window
the refused hit was counted in, not a guess. A client that waits that long is admitted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from protocol.errors import CodedError, ErrorCode
from storage.ratelimit import CREATES_DAY_BUCKET, DAY_S, Refused, RateLimiter


async def within(limiter: RateLimiter, bucket: str, subject: str, *, limit: int, window_s: int, message: str) -> None:
    """Count one hit of ``subject`` in ``bucket``; past ``limit`` in the window, ``rate_limited``
    with ``retry_after_s``."""
    wait_s = await limiter.wait_s(bucket, subject, limit=limit, window_s=window_s)
    if wait_s:
        raise CodedError(ErrorCode.RATE_LIMITED, message, retry_after_s=wait_s)


@asynccontextmanager
async def created_today(limiter: RateLimiter, address: str, *, limit: int, guest: bool) -> AsyncIterator[None]:
    """Count one session creation of a ``guest`` from ``address`` in the day's cap every
    anonymous kind shares (the pattern API's, storage.ratelimit.CREATES_DAY_BUCKET) around the
    block that creates it. An account the operator issued is not counted: its per-user limits
    hold it, and the people of one office or one phone carrier's address share no day's cap.

    Past ``limit`` in the UTC day, ``rate_limited`` with ``retry_after_s`` to the day's end. A
    voice or stream session has no TTL, and guest tokens are cheap: without a day's cap, one
    address kept ``creates_per_min_per_address`` sessions a minute, ~43,000 a day, every day.
    Call it last, after every per-minute limit, so that a creation refused there is not counted
    here; a block that fails gives its count back (only made sessions count).
    """
    if not guest:
        yield
        return
    taken = await limiter.take(CREATES_DAY_BUCKET, address, limit=limit, window_s=DAY_S)
    if isinstance(taken, Refused):
        raise CodedError(
            ErrorCode.RATE_LIMITED,
            f"at most {limit} sessions a day from this address; try again tomorrow",
            retry_after_s=taken.retry_after_s,
        )
    try:
        yield
    except BaseException:
        await limiter.give_back(taken)
        raise
