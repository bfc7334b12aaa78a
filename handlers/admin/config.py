"""Admin settings (``SESSIONHUB_ADMIN_*``, listed in README.md).

Read from the environment when the capability is installed: capabilities get the shared
``Services`` bundle, which carries no per-capability settings.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage.admin import CostRates


class AdminConfig(BaseSettings):
    """Thresholds, cost rates and alert limits of the admin dashboard."""

    model_config = SettingsConfigDict(env_prefix="SESSIONHUB_ADMIN_", extra="ignore")

    orphan_days: int = Field(default=90, ge=1, le=36_500)
    storage_cost_per_gb_month: float = Field(default=0.5, ge=0)
    read_cost_per_million: float = Field(default=0.5, ge=0)
    write_cost_per_million: float = Field(default=5.0, ge=0)
    memory_budget_bytes: int = Field(default=0, ge=0)  # 0: Redis's maxmemory (no alert without one)
    memory_alert_ratio: float = Field(default=0.8, gt=0, le=1)
    large_session_bytes: int = Field(default=100 * 1024, ge=1)
    creation_spike_factor: float = Field(default=5.0, gt=1)
    creation_spike_min: int = Field(default=20, ge=1)
    job_stuck_s: int = Field(default=600, ge=1)
    dead_letter_alert: int = Field(default=1, ge=1)
    node_heartbeat_s: float = Field(default=5.0, gt=0, le=300)
    metrics_public: bool = False  # /metrics without an admin token (for a scraper on a private network)
    actions_per_min: int = Field(default=30, ge=1)

    def rates(self) -> CostRates:
        """The cost rates of the monthly estimate."""
        return CostRates(
            storage_per_gb_month=self.storage_cost_per_gb_month,
            reads_per_million=self.read_cost_per_million,
            writes_per_million=self.write_cost_per_million,
        )
