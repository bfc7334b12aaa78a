"""Keeps the node's list of signed-out devices current, and disconnects their sockets.

Access tokens are verified without a Redis round trip (``auth.tokens``); this loop is the
cheap cache that lets every node refuse a revoked device's tokens within ``revocation_poll_s``
of the revocation, long before the tokens expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from handlers.background import STOP_WAIT_S, cancelled, stop_if_cancelled
from handlers.connection import Connections
from handlers.context import Services
from storage.failures import REDIS_AWAY

log = logging.getLogger(__name__)

SIGNED_OUT_EVENT = "signed_out"


class RevocationWatch:
    """Polls the revoked families every ``interval_s``; tells and drops their open sockets."""

    def __init__(self, services: Services, connections: Connections, sio: Any, *, interval_s: float) -> None:
        self._s = services
        self._connections = connections
        self._sio = sio
        self.interval_s = interval_s

    def register(self, app: web.Application) -> None:
        """Run the watch for the app's lifetime."""
        app.cleanup_ctx.append(self._lifetime)

    async def _lifetime(self, _: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(self._watch_forever())
        yield
        task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait({task}, timeout=STOP_WAIT_S)

    async def _watch_forever(self) -> None:
        while not cancelled():
            try:
                await self.poll()
            except REDIS_AWAY as exc:
                stop_if_cancelled(exc)
                log.warning("revoked devices: %s", exc)
            await asyncio.sleep(self.interval_s)

    async def poll(self) -> None:
        """Adopt the current revocations, then sign out the sockets of revoked devices."""
        revoked = frozenset(await self._s.identities.revoked_now())
        self._s.tokens.revoked_families = revoked
        for sid in self._connections.of_families(revoked):
            # Told first, so that a page can say why instead of retrying with a dead token.
            message = {"error": "unauthorized", "message": "this device was signed out"}
            await self._sio.emit(SIGNED_OUT_EVENT, message, to=sid)
            await self._sio.disconnect(sid)
