"""Admin thresholds and rates (``SESSIONHUB_ADMIN_*`` settings, listed in README.md).

Built from the server's settings by ``server.services.limits_section``, the one place where
settings become limits, and handed to ``install``.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.admin.repository import CostRates


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """Thresholds, cost rates and alert limits of the admin dashboard."""

    orphan_days: int
    storage_cost_per_gb_month: float
    read_cost_per_million: float
    write_cost_per_million: float
    memory_budget_bytes: int
    memory_alert_ratio: float
    large_session_bytes: int
    creation_spike_factor: float
    creation_spike_min: int
    job_stuck_s: int
    dead_letter_alert: int
    node_heartbeat_s: float
    metrics_public: bool  # /metrics without an admin token (a scraper on a private network)
    actions_per_min: int

    def rates(self) -> CostRates:
        """The cost rates of the monthly estimate."""
        return CostRates(
            storage_per_gb_month=self.storage_cost_per_gb_month,
            reads_per_million=self.read_cost_per_million,
            writes_per_million=self.write_cost_per_million,
        )
