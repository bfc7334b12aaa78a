"""Keeps the recording leases of this node's connections (storage/voice/recording.py).

The connection that sets ``recording`` or ``cutting`` holds its session's lease: this node
renews it while the connection lives, and ends it when the connection goes (the session is
paused at once). Every node also sweeps for leases that ran out, which is how a recording whose
node was killed ends: within one lease, plus one sweep interval.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from functools import partial

from aiohttp import web

from handlers.background import STOP_WAIT_S, cancelled, stop_if_cancelled
from handlers.connection import Connection
from handlers.context import Services
from storage.voice.recording import RecordingLeases

log = logging.getLogger(__name__)

RECORDING_STATUSES = frozenset({"recording", "cutting"})
SWEEP_BATCH = 100
# Sessions a connection is remembered to have been let record, at most (then it starts again).
VERIFIED_MAX = 256


class RecordingKeeper:
    """This node's recording leases, and the sweep for everybody's expired ones."""

    def __init__(self, services: Services) -> None:
        self.leases = RecordingLeases(
            redis=services.redis,
            keys=services.keys,
            log=services.log,
            clock=services.clock,
            lease_ms=services.voice.config.recording_lease_ms,
        )
        # Unique per process: a holder names the node as well as the Socket.IO sid, which
        # another node may reuse.
        self._node = secrets.token_hex(6)
        self._held: dict[str, set[str]] = {}  # sid -> ids of the sessions its lease covers
        # sid -> ids of the sessions it was let record: kept while it lives, though its leases come
        # and go (pausing ends one): what let it record, the session's owner and the connection's
        # claims, does not change (handlers/voice/events.py, set_status).
        self._verified: dict[str, set[str]] = {}
        lease_s = self.leases.lease_ms / 1000
        # Renewed three times per lease: one slow round trip does not lose it.
        self._renew_every_s = lease_s / 3
        self._sweep_every_s = min(max(lease_s / 4, 0.1), 2.0)
        self._task: asyncio.Task[None] | None = None

    def holder(self, sid: str) -> str:
        """The lease holder string of a connection of this node."""
        return f"{self._node}:{sid}"

    def recorded_before(self, sid: str, session_id: str) -> bool:
        """True when connection ``sid`` took ``session_id``'s lease before (it was let change the
        session then), whether or not it holds the lease now."""
        sessions = self._verified.get(sid)
        return sessions is not None and session_id in sessions

    def hold(self, conn: Connection, session_id: str) -> None:
        """``conn`` took ``session_id``'s lease: renew it while ``conn`` lives, end it after."""
        sessions = self._held.get(conn.sid)
        if sessions is None:
            sessions = self._held[conn.sid] = set()
            conn.farewells["voice:recording"] = partial(self._closed, conn.sid)
        sessions.add(session_id)
        verified = self._verified.setdefault(conn.sid, set())
        if len(verified) >= VERIFIED_MAX:
            verified.clear()  # bounded: a session read again costs one read, nothing more
        verified.add(session_id)

    async def _closed(self, sid: str) -> None:
        self._verified.pop(sid, None)
        for session_id in self._held.pop(sid, set()):
            await self.leases.release(session_id, self.holder(sid))

    async def renew_all(self) -> None:
        """Renew every lease this node's connections hold; forget those they hold no more."""
        for sid, sessions in list(self._held.items()):
            for session_id in list(sessions):
                if not await self.leases.renew(session_id, self.holder(sid)):
                    sessions.discard(session_id)

    def register(self, app: web.Application) -> None:
        """Renew and sweep while ``app`` runs."""
        app[RECORDING_KEEPER] = self
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)

    async def _start(self, _: web.Application) -> None:
        self._task = asyncio.create_task(self._run(), name="voice-recording-leases")

    async def _stop(self, _: web.Application) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=STOP_WAIT_S)
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        renew_at = loop.time()
        while not cancelled():
            try:
                if loop.time() >= renew_at:
                    renew_at = loop.time() + self._renew_every_s
                    await self.renew_all()
                while (await self.leases.sweep_due(limit=SWEEP_BATCH))[0] >= SWEEP_BATCH:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away for a moment: the next round retries
                stop_if_cancelled(exc)
                log.exception("recording lease round failed")
            await asyncio.sleep(self._sweep_every_s)


# The app's RecordingKeeper (tests renew its leases at a moment of their choosing).
RECORDING_KEEPER = web.AppKey("voice_recording_keeper", RecordingKeeper)
