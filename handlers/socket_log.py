"""One log line per Socket.IO event, with an id of its own, as ``request_log`` does for HTTP.

Logged on ``sessionhub.event`` at INFO: ``event, sid, session_id, outcome, duration_ms,
request_id`` as extras (JSON fields with ``SESSIONHUB_LOG_FORMAT=json``, see ``server/logs.py``).
The line is the only per-event cost that grows with the log's verbosity, so it is built only
when the level lets it through, and its id is a per-process prefix and a counter (no random
bytes per event): unique across processes, free to make.
"""

from __future__ import annotations

import itertools
import logging
import secrets

log = logging.getLogger("sessionhub.event")


class SocketEventLog:
    """Writes the line of each handled event."""

    def __init__(self, *, level: int = logging.INFO) -> None:
        self._level = level
        self._prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)

    def enabled(self) -> bool:
        """Whether a line would be written (checked before anything is built)."""
        return log.isEnabledFor(self._level)

    def next_id(self) -> str:
        """A new event id: ``<process prefix>-<hex count>``."""
        return f"{self._prefix}-{next(self._ids):x}"

    def write(self, event: str, sid: str, session_id: str, outcome: str, elapsed_s: float) -> None:
        """Log one handled event (call only when :meth:`enabled`)."""
        duration_ms = round(elapsed_s * 1000, 2)
        log.log(
            self._level,
            "%s %s %.2fms",
            event,
            outcome,
            duration_ms,
            extra={
                "request_id": self.next_id(),
                "event": event,
                "sid": sid,
                "session_id": session_id,
                "outcome": outcome,
                "duration_ms": duration_ms,
            },
        )
