"""Pattern-session settings (``SESSIONHUB_PATTERNS_*``, listed in README.md).

Read from the environment when the capability is installed: capabilities get the shared
``Services`` bundle, which carries no per-capability settings.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PatternConfig(BaseSettings):
    """Limits of pattern sessions."""

    model_config = SettingsConfigDict(env_prefix="SESSIONHUB_PATTERNS_", extra="ignore")

    creates_per_min: int = Field(default=10, ge=1)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    orphan_days: int = Field(default=90, ge=1)
    max_players: int = Field(default=10, ge=1, le=1000)
    presence_ttl_s: int = Field(default=30, ge=5, le=3600)
    cursor_interval_ms: int = Field(default=100, ge=0, le=10_000)
