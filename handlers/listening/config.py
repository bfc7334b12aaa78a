"""Listening-history limits (``SESSIONHUB_LISTENING_*`` settings; every one is listed in README.md).

Built from the server's settings by ``server.services.limits_section``, the one place
where settings become limits, and handed to ``install``.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.listening.model import ListeningRules


@dataclass(frozen=True, slots=True)
class ListeningSettings:
    """The seed's numbers (window, throttle, minimum length), the sweep and the caps."""

    window_s: float
    throttle_s: float
    min_session_ms: int
    silence_s: float
    sweep_interval_s: float
    max_devices: int
    max_items: int
    max_sessions: int
    http_reports_per_min: int
    # Sessions the guests of one client address add (start or upload) per UTC day.
    guest_sessions_per_day: int

    def rules(self) -> ListeningRules:
        """The numbers the scripts apply."""
        return ListeningRules(
            window_ms=round(self.window_s * 1000),
            throttle_ms=round(self.throttle_s * 1000),
            min_ms=self.min_session_ms,
            silence_ms=round(self.silence_s * 1000),
            max_devices=self.max_devices,
            max_items=self.max_items,
            max_sessions=self.max_sessions,
        )
