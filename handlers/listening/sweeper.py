"""The silence sweeper: finalizes sessions whose player went silent, on every node.

Nodes do not coordinate beyond Redis: each history due for a sweep is claimed under a lease
(``due_claim.lua``) before it is swept, so two nodes never sweep one history at once.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from handlers.background import STOP_WAIT_S, cancelled, rest, stop_if_cancelled

from storage.failures import REDIS_AWAY
from storage.listening.repository import ListeningHistories

log = logging.getLogger(__name__)

BATCH = 100


class Sweeper:
    """A background task started and stopped with the app."""

    def __init__(self, histories: ListeningHistories, *, interval_s: float) -> None:
        self._histories = histories
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def register(self, app: web.Application) -> None:
        """Run while ``app`` runs."""
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)

    async def _start(self, _: web.Application) -> None:
        self._task = asyncio.create_task(self._run(), name="listening-sweeper")

    async def _stop(self, _: web.Application) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=STOP_WAIT_S)
            self._task = None

    async def _run(self) -> None:
        while not cancelled():
            try:
                # Keep going while a full batch came back: a backlog drains at once.
                while (await self._histories.sweep_due(limit=BATCH))[0] >= BATCH:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away for a moment: the next round retries
                stop_if_cancelled(exc)
                if isinstance(exc, REDIS_AWAY):  # a restart or failover: no traceback, no ERROR
                    log.warning("listening sweep failed: %s; the next round retries", exc)
                else:
                    log.exception("listening sweep failed")
            await rest(self._interval_s)
