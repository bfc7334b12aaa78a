"""Pattern-session limits (``SESSIONHUB_PATTERNS_*`` settings, listed in README.md).

Built from the server's settings by ``server.services.limits_section``, the one place
where settings become limits, and handed to ``install``.
"""

from __future__ import annotations

from dataclasses import dataclass

# Room for a PUT body's wrapper (`{"state": …}`) and encoders' differences: a state live edits
# leave behind can always be saved with PUT.
STATE_BODY_MARGIN_BYTES = 64


@dataclass(frozen=True, slots=True)
class PatternConfig:
    """Limits of pattern sessions."""

    creates_per_min: int
    creates_per_day: int
    writes_per_min: int
    max_body_bytes: int
    orphan_days: int
    max_players: int
    # Places one user holds at once (their tabs and devices): one guest token's ten connections
    # took every place of a pattern (audit "anonhostile").
    places_per_user: int
    presence_ttl_s: int
    cursor_interval_ms: int

    @property
    def max_state_bytes(self) -> int:
        """The most a stored state may take as compact JSON: what a PUT body can carry back."""
        return self.max_body_bytes - STATE_BODY_MARGIN_BYTES
