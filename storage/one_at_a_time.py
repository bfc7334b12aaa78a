"""Per key, one run of a piece of work at a time in this process; callers meanwhile wait for it.

Index builds of a stream (its review index, its per-viewer index) take many Redis calls; two
reads of one stream arriving together would each build it whole. The second waits for the
first instead, and runs the work itself only if that one did not succeed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class OneAtATime:
    """Runs of work keyed by a string (a session id), one at a time per key."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[None]] = {}

    async def run(self, key: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` for ``key``; with a run under way, wait for it, and run again only if it
        failed or was cancelled (its outcome is not this caller's to raise)."""
        under_way = self._running.get(key)
        if under_way is not None:
            await asyncio.wait([under_way])
            if not under_way.cancelled() and under_way.exception() is None:
                return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._running[key] = done
        try:
            await work()
            done.set_result(None)
        except asyncio.CancelledError:
            done.cancel()
            raise
        except Exception as exc:
            done.set_exception(exc)
            done.exception()  # retrieved: a run nobody waited for is not logged a second time
            raise
        finally:
            if self._running.get(key) is done:
                del self._running[key]
