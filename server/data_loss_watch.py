"""Notices a Redis emptied under a live link, and has every room read its log again.

A Redis restarted empty closes the links, and the bus's reconnect makes every room catch up
from its log (a log gone: ``session_resync`` with the empty epoch, then ``session_not_found``).
A ``FLUSHALL`` or ``FLUSHDB`` on a running Redis, or keys evicted, closes nothing: subscribers
went on showing a live recording of a session that was gone, while every write answered
``session_not_found`` (audit "redispressure"). The deployment's id-sealing secret
(storage.events) is the sign: one key every node reads, gone (or made anew by the first node to
write after the loss) only when Redis lost data. One ``GET`` every few seconds per node looks.
A single Redis only (server.app): on a cluster, a flush is one shard's, and a failover's lost
writes are the bus's to notice.
"""

from __future__ import annotations

import logging

from aiohttp import web

from handlers.background import every, for_app_lifetime
from handlers.log_throttle import LogThrottle
from server.bus import Bus
from storage.events import EventLog

log = logging.getLogger(__name__)
_failed = LogThrottle(log)

# How often a node looks (a subscriber learns of the loss within about this).
CHECK_S = 2.0


class DataLossWatch:
    """Looks for the deployment's id secret every ``interval_s``; its loss resyncs the rooms."""

    def __init__(self, events: EventLog, bus: Bus, *, interval_s: float = CHECK_S) -> None:
        self._events = events
        self._bus = bus
        self.interval_s = interval_s

    def register(self, app: web.Application) -> None:
        """Run the watch for the app's lifetime (Redis away: the bus's reconnect takes it from there)."""
        for_app_lifetime(app, self._watch_forever)

    async def _watch_forever(self) -> None:
        await every(lambda: self.interval_s, self.check, what="data loss watch", failed=_failed, away=None)

    async def check(self) -> bool:
        """Look once; True when Redis was found emptied (and the rooms told to read their logs)."""
        if not await self._events.id_key_gone():
            return False
        log.warning(
            "Redis lost its data without a restart (FLUSHALL, FLUSHDB or keys evicted): the deployment's"
            " event-id secret is gone; every session followed here reads its log again"
        )
        self._bus.lost_data()
        return True
