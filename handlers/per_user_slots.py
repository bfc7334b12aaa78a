"""At most a few of one kind of long work per user at once on a process (exports, say).

Such work holds a connection and the event loop's time for seconds; one user starting it again
and again, or a script with the user's token, held as much of the node as it liked. Counted in
the process: nothing to give back when a node dies, and a user's work runs on the node that took
the request.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from protocol.errors import CodedError, ErrorCode


class PerUserSlots:
    """``limit`` slots per user; one more is refused ``rate_limited`` with ``retry_after_s``."""

    def __init__(self, what: str, limit: int, retry_after_s: int) -> None:
        self._what = what  # plural, as the refusal says it: "exports"
        self._limit = limit
        self._retry_after_s = retry_after_s
        self._running: Counter[str] = Counter()

    @contextmanager
    def slot(self, user_id: str) -> Iterator[None]:
        """Hold one of ``user_id``'s slots for the ``with`` block, or raise ``rate_limited``."""
        if self._running[user_id] >= self._limit:
            raise CodedError(
                ErrorCode.RATE_LIMITED,
                f"at most {self._limit} {self._what} at once; wait for one to finish",
                retry_after_s=self._retry_after_s,
            )
        self._running[user_id] += 1
        try:
            yield
        finally:
            self._running[user_id] -= 1
            if self._running[user_id] <= 0:
                del self._running[user_id]
