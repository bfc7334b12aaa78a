"""The node's background loops that must outlive any failure, and which of them run."""

from __future__ import annotations

import asyncio

# logger name -> the loop's coroutine (its qualified name): the revocation watch, the deletion
# follow-ups and the heartbeat, each of which ended for good on an error it did not catch.
BACKGROUND_LOOPS = {
    "handlers.revocation_watch": "RevocationWatch._watch_forever",
    "handlers.cleanups": "CleanupRetry._retry_forever",
    "handlers.admin.nodes": "NodeHeartbeat._beat_forever",
}


# A node's settings that turn those loops every 50 ms, so that a test sees them fail and go on.
FAST_LOOPS: dict[str, object] = {"revocation_poll_s": 0.05, "cleanup_retry_s": 0.05, "admin_node_heartbeat_s": 0.05}


def running_loops() -> set[str]:
    """The qualified names of the coroutines of this loop's tasks still running."""
    return {task.get_coro().__qualname__ for task in asyncio.all_tasks() if not task.done()}  # type: ignore[union-attr]
