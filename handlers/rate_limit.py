"""The refusal of a fixed-window limit: ``rate_limited`` saying when the window turns.

Every per-minute limit (creates, guest tokens, refreshes, sign-ins, uploads, jobs, admin
actions...) refuses through :func:`within`, so each 429 and each ack carries ``retry_after_s``
(and an HTTP answer ``Retry-After``, handlers.errors.to_http): the seconds left in the window
the refused hit was counted in, not a guess. A client that waits that long is admitted.
"""

from __future__ import annotations

from protocol.errors import CodedError, ErrorCode
from storage.ratelimit import RateLimiter


async def within(limiter: RateLimiter, bucket: str, subject: str, *, limit: int, window_s: int, message: str) -> None:
    """Count one hit of ``subject`` in ``bucket``; past ``limit`` in the window, ``rate_limited``
    with ``retry_after_s``."""
    wait_s = await limiter.wait_s(bucket, subject, limit=limit, window_s=window_s)
    if wait_s:
        raise CodedError(ErrorCode.RATE_LIMITED, message, retry_after_s=wait_s)
