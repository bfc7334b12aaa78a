"""Listening-history settings (``SESSIONHUB_LISTENING_*``; every one is listed in README.md).

They are read here, not in ``server.settings``: a capability's ``install`` gets the shared
services only, and the bundle must not grow a field per capability.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage.listening_model import ListeningRules


class ListeningSettings(BaseSettings):
    """The seed's numbers (window, throttle, minimum length), the sweep and the caps."""

    model_config = SettingsConfigDict(env_prefix="SESSIONHUB_LISTENING_", extra="ignore")

    window_s: float = Field(default=300.0, gt=0, le=86400)
    throttle_s: float = Field(default=5.0, ge=0, le=3600)
    min_session_ms: int = Field(default=1000, ge=0, le=3_600_000)
    silence_s: float = Field(default=60.0, gt=0, le=86400)
    sweep_interval_s: float = Field(default=5.0, gt=0, le=3600)
    max_devices: int = Field(default=16, ge=1, le=1000)
    max_items: int = Field(default=10_000, ge=1)
    max_sessions: int = Field(default=100_000, ge=1)
    http_reports_per_min: int = Field(default=600, ge=1)

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
