"""Stream-session limits (``SESSIONHUB_CLIPS_*`` settings, listed in README.md).

Built from the server's settings by ``server.services.limits_section``, the one place where
settings become limits, and handed to ``install``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClipSettings:
    """Cooldown, cap and review defaults of stream sessions."""

    cooldown_s: float
    max_per_session: int
    moment_window_s: int
    # Per submitter and per guest address, so a few accounts cannot fill max_per_session for all.
    max_per_viewer: int
    max_per_address: int
    # ... and the clips the guests of one address store per UTC day over every session.
    max_per_address_per_day: int
    # Parsed clips a process keeps of big streams' last whole reads (storage/streams/clips_cache.py).
    cached: int
