"""The wire vocabulary every layer shares: error codes and event type names (imports nothing of ours)."""
