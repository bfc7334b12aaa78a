"""Pattern-session limits (``SESSIONHUB_PATTERNS_*`` settings, listed in README.md).

Built from the server's settings by ``server.services.limits_section``, the one place
where settings become limits, and handed to ``install``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PatternConfig:
    """Limits of pattern sessions."""

    creates_per_min: int
    creates_per_day: int
    writes_per_min: int
    max_body_bytes: int
    orphan_days: int
    max_players: int
    presence_ttl_s: int
    cursor_interval_ms: int
