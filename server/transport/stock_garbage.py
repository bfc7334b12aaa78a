"""The stock lane's ended sessions, collected: a full garbage collection once enough have ended,
at a quiet moment.

python-engineio's and aiohttp's objects of a session that ended are reference cycles (~95
objects, ~20 KB: the exceptions its reader and writer tasks ended with hold their frames, which
hold the WebSocket, the request and the socket). Only the cyclic collector frees them, and since
the session was open for a while they are in the oldest generation by then, which ``serve``
collects rarely (``server.process``: every ~90 M net allocations, ~15 minutes of sweeps when
idle; it walks every object alive). A stock-lane node grew 208 MB for good per 10,000
reconnects (``SESSIONHUB_TRANSPORT=stock bench/soak_mass_disconnect.py``). CPython's own pace
for full collections bounded that, but held the event loop 0.4-1.1 s again and again while
5,000 clients connected (each full collection walks every connection alive).

So a full collection runs once :data:`ENDED_BEFORE_COLLECTING` sessions have ended since the
last one, when no session has opened or ended for :data:`QUIET_S` (a mass disconnect over: few
connections left to walk) or :data:`AT_MOST_S` after the count was reached, whichever comes
first. The fast lane leaves no such garbage (``server.transport.fastpath._let_go``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)

# Ended sessions after which their garbage is collected (~40 MB of it).
ENDED_BEFORE_COLLECTING = 2000
# No session opened or ended for this long: the collection runs.
QUIET_S = 0.5
# Never later than this after the count was reached, quiet or not.
AT_MOST_S = 30.0


class EndedSessions:
    """Counts sessions opened and ended; collects their garbage (see the module docstring)."""

    __slots__ = ("_check", "_due_since", "_ended", "_last_change", "_stopped", "after", "at_most_s", "quiet_s")

    def __init__(
        self, after: int = ENDED_BEFORE_COLLECTING, quiet_s: float = QUIET_S, at_most_s: float = AT_MOST_S
    ) -> None:
        self.after = after
        self.quiet_s = quiet_s
        self.at_most_s = at_most_s
        self._ended = 0
        self._last_change = 0.0  # monotonic time of the last session opened or ended
        self._due_since = 0.0
        self._check: asyncio.TimerHandle | None = None
        self._stopped = False

    def opened(self) -> None:
        """A session opened: the node is not quiet."""
        self._last_change = time.monotonic()

    def ended(self) -> None:
        """A session ended: its garbage counts towards the next collection."""
        now = time.monotonic()
        self._last_change = now
        self._ended += 1
        if self._ended >= self.after and self._check is None and not self._stopped:
            self._due_since = now
            self._check = asyncio.get_running_loop().call_later(self.quiet_s, self._when_quiet)

    def stop(self) -> None:
        """Collect nothing more (the server is shutting down)."""
        self._stopped = True
        if self._check is not None:
            self._check.cancel()
            self._check = None

    def _when_quiet(self) -> None:
        now = time.monotonic()
        quiet_for = now - self._last_change
        if quiet_for < self.quiet_s and now - self._due_since < self.at_most_s:
            self._check = asyncio.get_running_loop().call_later(self.quiet_s - quiet_for, self._when_quiet)
            return
        self._check = None
        ended, self._ended = self._ended, 0
        if not gc.isenabled():  # a process that turned the collector off decides for itself
            return
        started = time.perf_counter()
        freed = gc.collect()
        log.debug(
            "garbage of %d ended sessions collected: %d objects freed in %.0f ms",
            ended,
            freed,
            (time.perf_counter() - started) * 1000,
        )
