"""Identity: JWT issue and verification, claims, permissions and access rules."""
