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


def running_loops() -> set[str]:
    """The qualified names of the coroutines of this loop's tasks still running."""
    return {task.get_coro().__qualname__ for task in asyncio.all_tasks() if not task.done()}  # type: ignore[union-attr]
