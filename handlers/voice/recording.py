"""Keeps the recording leases of this node's connections (storage/voice/recording.py).

The connection that sets ``recording`` or ``cutting`` holds its session's lease: this node
renews it while the connection lives, and ends it when the connection goes (the session is
paused at once). Every node also sweeps for leases that ran out, which is how a recording whose
node was killed ends: within one lease, plus one sweep interval.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import secrets
import time
from collections.abc import Callable
from functools import partial

from aiohttp import web

from handlers.background import STOP_WAIT_S, cancelled, rest, stop_if_cancelled
from handlers.connection import Connection
from handlers.context import Services
from handlers.log_throttle import LogThrottle
from storage.events import NotConfirmed
from storage.failures import REDIS_AWAY
from storage.voice.recording import RecordingLeases

log = logging.getLogger(__name__)
# A round failing for another cause than Redis away: its traceback once, then counted.
_failed = LogThrottle(log)

# A recorder's Done holds the lease through its final upload too: a recorder gone then left the
# session showing "final upload" for good, and every other device's Rec refused (audit "botflow").
RECORDING_STATUSES = frozenset({"recording", "cutting", "final_uploading"})
SWEEP_BATCH = 100
# Leases renewed at once, at most: their calls share a write and a read (one round trip for a
# batch on a lean link, instead of one each), and what is in flight stays bounded. Sending a
# batch and taking its replies holds the event loop, every other connection's events waiting:
# 64 hold it under about a millisecond (256 held it 2-4 ms; bench/lease_renewals.py).
RENEW_BATCH = 64
# Sessions a connection is remembered to have been let record, at most (then it starts again).
VERIFIED_MAX = 256
# Each lease is renewed a third of a lease after it was taken or last renewed, on its own
# time: a wake renews those due by then and those coming due within this share of the period
# (a little early, so nearby leases share a round trip). All of a node's leases at once was a
# burst of back-to-back batches every period that the events queued behind in Redis, and it
# renewed leases taken a moment before.
RENEW_AHEAD_SHARE = 1 / 8
# The keeper sleeps at least this long between wakes (leases come due at any moment).
MIN_WAKE_S = 0.05


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
        # sid -> {id of a session its lease covers: (the take that made it so, when it is due
        # for renewal on self.now())}. A renewal finding the lease gone lets it go only if
        # it was not taken again while the renewal was out.
        self._held: dict[str, dict[str, tuple[int, float]]] = {}
        # The clock the renewals are timed on (tests move it forward).
        self.now: Callable[[], float] = time.monotonic
        # (due, take, sid, session id), earliest first: an entry is current while _held still
        # says (take, due) for it; one left behind by a renewal, a pause or a close is skipped.
        self._due: list[tuple[float, int, str, str]] = []
        self._takes = itertools.count(1)
        # sid -> ids of the sessions it was let record: kept while it lives, though its leases come
        # and go (pausing ends one): what let it record, the session's owner and the connection's
        # claims, does not change (handlers/voice/events.py, set_status).
        self._verified: dict[str, set[str]] = {}
        # sid -> the recorder id its statuses named (part of its holder string; see holder).
        self._recorders: dict[str, str] = {}
        lease_s = self.leases.lease_ms / 1000
        # Renewed three times per lease: one slow round trip does not lose it.
        self._renew_every_s = lease_s / 3
        self._renew_ahead_s = self._renew_every_s * RENEW_AHEAD_SHARE
        self._sweep_every_s = min(max(lease_s / 4, 0.1), 2.0)
        self._task: asyncio.Task[None] | None = None
        # Set as the node starts to stop, before it closes its connections: their closes then
        # leave the leases to run out, as a crash does (see _closed).
        self._node_stopping = False

    def holder(self, conn: Connection, recorder: str | None = None) -> str:
        """The lease holder string of a connection of this node: with the recorder's own id
        (the FAB's, kept across its reconnections) from the first status that named one; the
        connection keeps that one (a lease's release and renewals must name it as it was taken)."""
        # Not once the connection holds a lease under its name without one: renewed and released
        # under another name, that lease ran out and paused a connection still recording (a raw
        # client naming itself partway: audit "verify51").
        if recorder and conn.sid not in self._recorders and not self._held.get(conn.sid):
            self._recorders[conn.sid] = recorder
            conn.farewells["voice:recording"] = partial(self._closed, conn.sid)  # forgets it
        return self._holder(conn.sid)

    def _holder(self, sid: str) -> str:
        recorder = self._recorders.get(sid)
        return f"{self._node}:{sid}:{recorder}" if recorder else f"{self._node}:{sid}"

    def recorded_before(self, sid: str, session_id: str) -> bool:
        """True when connection ``sid`` took ``session_id``'s lease before (it was let change the
        session then), whether or not it holds the lease now."""
        sessions = self._verified.get(sid)
        return sessions is not None and session_id in sessions

    def hold(self, conn: Connection, session_id: str) -> None:
        """``conn`` took ``session_id``'s lease: renew it while ``conn`` lives, end it after."""
        sessions = self._held.get(conn.sid)
        if sessions is None:
            sessions = self._held[conn.sid] = {}
            conn.farewells["voice:recording"] = partial(self._closed, conn.sid)
        self._schedule(conn.sid, session_id, next(self._takes), self.now() + self._renew_every_s)
        verified = self._verified.setdefault(conn.sid, set())
        if len(verified) >= VERIFIED_MAX:
            verified.clear()  # bounded: a session read again costs one read, nothing more
        verified.add(session_id)

    def _schedule(self, sid: str, session_id: str, take: int, due: float) -> None:
        self._held[sid][session_id] = (take, due)
        heapq.heappush(self._due, (due, take, sid, session_id))

    def _current(self, sid: str, session_id: str, take: int) -> bool:
        """True when connection ``sid`` still holds ``session_id``'s lease by the take ``take``."""
        sessions = self._held.get(sid)
        held = sessions.get(session_id) if sessions is not None else None
        return held is not None and held[0] == take

    def next_due(self) -> float | None:
        """When the earliest lease comes due for renewal (on :attr:`now`); None: none held.
        An entry left behind may answer early: a wake for it finds nothing to renew."""
        return self._due[0][0] if self._due else None

    async def _closed(self, sid: str) -> None:
        self._verified.pop(sid, None)
        held = self._held.pop(sid, {})
        holder = self._holder(sid)
        self._recorders.pop(sid, None)
        if self._node_stopping:
            # This node is stopping (a deploy), not the recorder leaving: it comes back through
            # another node, or this one restarted, and takes its lease over (`resume`) while it
            # lasts. Released here, the session was paused at once (recorder_gone) and every other
            # tab saw it flicker, where a crash showed nothing (audit "restarts2"). A recorder
            # that does not come back is paused by a sweep once the lease runs out.
            return
        for session_id in held:
            await self.leases.release(session_id, holder)

    def ended(self, sid: str, session_id: str) -> None:
        """Connection ``sid`` moved ``session_id`` to a status that is not recording: that change
        ended the lease (set_status.lua), so there is nothing of it left to renew. Without this
        a recorder's every pause cost one renewal more, a script that finds nothing."""
        sessions = self._held.get(sid)
        if sessions is not None:
            sessions.pop(session_id, None)

    async def renew_all(self) -> None:
        """Renew every lease this node's connections hold, due or not; forget those they hold no
        more (what tests call to renew at a moment of their choosing)."""
        await self._renew(
            [(sid, session_id, held[0]) for sid, taken in self._held.items() for session_id, held in taken.items()]
        )

    async def renew_due(self) -> int:
        """Renew the leases due by now, and those coming due within RENEW_AHEAD_SHARE of the
        period; forget those their connections hold no more. How many were sent."""
        horizon = self.now() + self._renew_ahead_s
        due: list[tuple[str, str, int]] = []
        while self._due and self._due[0][0] <= horizon:
            when, take, sid, session_id = heapq.heappop(self._due)
            sessions = self._held.get(sid)
            if sessions is not None and sessions.get(session_id) == (take, when):
                due.append((sid, session_id, take))
        await self._renew(due)
        return len(due)

    async def _renew(self, leases: list[tuple[str, str, int]]) -> None:
        """Renew ``(sid, session id, take)`` leases, RENEW_BATCH at once at most; each renewed
        one is due again a period later, a failed one at once (the next wake tries again).

        A batch goes together (``RecordingLeases.renew_many``: no task per lease): one after
        another, a node with a thousand recorders spent a thousand round trips every renewal
        period, each a turn of the loop and a read and a write for Redis. The first failure
        (Redis away) is raised once every batch has been tried.
        """
        failure: Exception | None = None
        for start in range(0, len(leases), RENEW_BATCH):
            batch = leases[start : start + RENEW_BATCH]
            renewed = await self.leases.renew_many([(session_id, self._holder(sid)) for sid, session_id, _ in batch])
            next_due = self.now() + self._renew_every_s
            for (sid, session_id, take), outcome in zip(batch, renewed, strict=True):
                if not self._current(sid, session_id, take):
                    continue  # paused, closed or taken again meanwhile: that has its own entry
                if isinstance(outcome, Exception):
                    failure = failure or outcome
                    self._schedule(sid, session_id, take, self.now())
                elif outcome:
                    self._schedule(sid, session_id, take, next_due)
                else:
                    del self._held[sid][session_id]  # the lease is gone: nothing left to renew
        if failure is not None:
            raise failure

    def register(self, app: web.Application) -> None:
        """Renew and sweep while ``app`` runs."""
        app[RECORDING_KEEPER] = self
        app.on_startup.append(self._start)
        # First of the stop's steps: before the transport closes the connections.
        app.on_shutdown.insert(0, self._stopping)
        app.on_cleanup.append(self._stop)

    async def _stopping(self, _: web.Application) -> None:
        self._node_stopping = True

    async def _start(self, _: web.Application) -> None:
        self._task = asyncio.create_task(self._run(), name="voice-recording-leases")

    async def _stop(self, _: web.Application) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=STOP_WAIT_S)
            self._task = None

    async def _run(self) -> None:
        sweep_at = self.now()
        while not cancelled():
            try:
                await self.renew_due()
                if self.now() >= sweep_at:
                    sweep_at = self.now() + self._sweep_every_s
                    while (await self.leases.sweep_due(limit=SWEEP_BATCH))[0] >= SWEEP_BATCH:
                        pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next wake retries
                stop_if_cancelled(exc)
                if isinstance(exc, (*REDIS_AWAY, NotConfirmed)):
                    # An outage, said in a line a round (every <= 2 s): a traceback a round made
                    # a minute of Redis away thirty of them at ERROR. A pause applied but not
                    # confirmed durable (a master without a replica under replica durability,
                    # which /readyz says) is no bug either; the next round sees it applied.
                    log.warning("recording lease round: %s", exc)
                else:
                    _failed.exception("recording lease round failed", exc)
                await rest(self._sweep_every_s)
                continue
            # Until the next lease comes due or the next sweep, whichever is first. A lease
            # taken meanwhile is due a third of a lease on, after the next sweep (a quarter of
            # a lease at most): no wake is missed.
            wake = sweep_at if (due := self.next_due()) is None else min(sweep_at, due)
            await rest(max(MIN_WAKE_S, wake - self.now()))


# The app's RecordingKeeper (tests renew its leases at a moment of their choosing).
RECORDING_KEEPER = web.AppKey("voice_recording_keeper", RecordingKeeper)
