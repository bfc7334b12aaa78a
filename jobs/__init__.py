"""Job processors the worker runs (post-processing of sessions)."""
