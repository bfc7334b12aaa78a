"""Admin and operations: metrics, session listings, orphans, alerts, Prometheus (issue 11)."""
