"""Log each cause of a repeated failure once, then count it.

A hostile client sending malformed frames, or a Redis outage failing every request, would
otherwise write one traceback per occurrence (thousands a second). The first occurrence of a
cause is logged with its traceback; repeats are counted and reported in one line at most once
per ``every_s`` while they continue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Seen:
    since_s: float
    repeats: int = 0


class LogThrottle:
    """Throttled exception logging, keyed by cause (exception type and where it was raised)."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        level: int = logging.ERROR,
        every_s: float = 60.0,
        max_causes: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._level = level
        self._every_s = every_s
        self._max_causes = max_causes
        self._clock = clock
        self._seen: dict[str, _Seen] = {}

    def exception(self, message: str, exc: BaseException, *, expected: bool = False, cause: str = "") -> bool:
        """Log ``exc`` under ``message`` if its cause is new (True), else count it (False).

        ``expected``: a fault of the world, not of the code (Redis away, a cluster moving), which
        the client is answered a retryable error for: a WARNING line saying what, no traceback.
        An ordinary reshard wrote a 25-line ERROR traceback per cause and node.
        ``cause``: one name for a fault that every call site meets alike (a Redis refusing all
        writes), instead of one line per place that met it."""
        cause = cause or cause_of(exc)
        level = logging.WARNING if expected else self._level
        now = self._clock()
        seen = self._seen.get(cause)
        if seen is None:
            if len(self._seen) >= self._max_causes:  # bounded: forget the oldest cause
                self._seen.pop(next(iter(self._seen)))
            self._seen[cause] = _Seen(since_s=now)
            if expected:
                self._log.log(level, "%s: %s: %s (repeats are counted)", message, cause, exc)
            else:
                self._log.log(level, "%s: %s (repeats are counted)", message, cause, exc_info=exc)
            return True
        seen.repeats += 1
        if now - seen.since_s >= self._every_s:
            self._log.log(
                level, "%s: %s happened %d more times in %.0f s", message, cause, seen.repeats, now - seen.since_s
            )
            seen.since_s, seen.repeats = now, 0
        return False

    def repeats(self, exc: BaseException) -> int:
        """Occurrences of ``exc``'s cause not yet reported."""
        seen = self._seen.get(cause_of(exc))
        return seen.repeats if seen else 0


def cause_of(exc: BaseException) -> str:
    """``Type at file:line`` of the innermost frame that raised ``exc``."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f" at {tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}" if tb is not None else ""
    return f"{type(exc).__module__}.{type(exc).__qualname__}{where}"
