"""The clips capability's settings (``SESSIONHUB_CLIPS_*``, listed in README.md).

Read from the environment by the capability itself: the shared ``Services`` bundle carries no
per-capability settings, and adding fields there would collide with every other capability.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClipSettings(BaseSettings):
    """Cooldown, cap and review defaults of stream sessions."""

    model_config = SettingsConfigDict(env_prefix="SESSIONHUB_CLIPS_", extra="ignore")

    cooldown_s: float = Field(default=2.0, ge=0, le=3600)
    max_per_session: int = Field(default=10_000, ge=1, le=1_000_000)
    moment_window_s: int = Field(default=10, ge=1, le=600)
