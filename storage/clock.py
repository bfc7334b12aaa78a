"""The one injectable clock: every timestamp sessionhub stores comes from here."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class Clock:
    """Wall clock in unix milliseconds; ``shift_ms`` lets tests move time forward."""

    shift_ms: int = field(default=0)

    def now_ms(self) -> int:
        """Current time, unix milliseconds."""
        return int(time.time() * 1000) + self.shift_ms

    def now_s(self) -> float:
        """Current time, unix seconds."""
        return time.time() + self.shift_ms / 1000

    @staticmethod
    def monotonic_s() -> float:
        """Seconds on a clock that never jumps (for rates and intervals, not timestamps)."""
        return time.monotonic()
