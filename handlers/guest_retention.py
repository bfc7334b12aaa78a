"""The guest sweeper: what a guest alone owned goes once the guest has truly gone.

A guest that owns something is listed by its last visit (``storage.identity.guests``); every
visit (a refresh, a new device, a session made) moves it. One idle past ``guest_idle_s``, and
past the longest an access token minted at its last visit lives, can no longer come back: its
profile and devices have expired. Its voice and stream sessions and its listening history are
then deleted as an operator's deletion deletes them (``handlers.admin.deletion``: the session's
keys in one script, its audio files, owner lists and audience in its kind's ``on_delete``, owed
and retried, the admin indexes and counts with them), then its own keys. Pattern sessions it
made stay (seeds 001/004: anonymous, permanent), as do its clips in others' streams (the stream's).
A guest saved with a passkey or made an admin is an account, and keeps everything. Guests that
came to own something before the index of guests existed were kept for good then; the sweeper
lists them first, a page of the global session index per tick (``GuestIndex.backfill``).

Each tick does a bounded amount (``GUESTS_PER_TICK`` guests, ``SESSIONS_PER_TICK`` deletions);
a guest with more is taken up again at the next tick. A guest whose sweep meets Redis away ends
the tick and stays due for the next; any other failure puts that guest off a day. Every node
sweeps; a lease per guest keeps two nodes off one guest, and every step is safe to repeat after
a node died in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from redis.exceptions import BusyLoadingError, ClusterDownError, DataError, ReadOnlyError, ResponseError, TryAgainError

from handlers.admin.deletion import SessionDeleter
from handlers.background import STOP_WAIT_S, cancelled, stop_if_cancelled
from handlers.context import Services
from handlers.log_throttle import LogThrottle
from protocol.errors import CodedError
from storage.admin.repository import AdminStore
from storage.failures import REDIS_AWAY
from storage.identity.guests import GuestIndex, Standing
from storage.listening.model import KIND as LISTENING
from storage.streams.repository import KIND as STREAM
from storage.voice.repository import KIND as VOICE

log = logging.getLogger(__name__)
# A store with many bad records must not write a traceback each: the first of each cause is
# logged with the session's id, the others are counted and said once a minute.
_unreadable_log = LogThrottle(log)

# Errors Redis answers about itself mid-change (a failover, a restart still loading, a moving
# slot): they pass as Redis comes back. Any other answer (a script's error, a wrong type) is
# about the guest's data and would come again at the next pass.
_PASSING_ANSWERS = (ReadOnlyError, BusyLoadingError, TryAgainError, ClusterDownError)


# A socket's failures among OSErrors; the others (a permission, a full disk) come from the guest's
# audio files, and would come again.
_SOCKET_ERRORS = (ConnectionError, TimeoutError, socket.gaierror)


def redis_away(exc: BaseException) -> bool:
    """Whether ``exc`` says Redis was away (down, restarting, failing over) rather than that
    something of the guest could not be swept."""
    if isinstance(exc, (ResponseError, DataError)) and not isinstance(exc, _PASSING_ANSWERS):
        return False
    if isinstance(exc, OSError) and not isinstance(exc, _SOCKET_ERRORS):
        return False
    return isinstance(exc, REDIS_AWAY)


# The kinds a guest owns alone: they go with it. (A pattern is a capability link, kept for ever.)
GONE_WITH_OWNER = frozenset({VOICE, STREAM, LISTENING})
GUESTS_PER_TICK = 20
SESSIONS_PER_TICK = 50
# Sessions of the global index read per tick to list the guests that owned some before the index
# of guests existed (GuestIndex.backfill), until all are read: once per deployment.
BACKFILL_PER_TICK = 500
# A guest whose sweep failed for another reason than Redis (a record this server cannot read) is
# looked at again this much later, not at every tick ahead of the others. One whose sweep met
# Redis away stays due: the next tick (``interval_s``) takes it up again.
RETRY_LATER_MS = 86_400_000
# A node that dies mid-sweep holds its guest this long; a sweep of SESSIONS_PER_TICK deletions
# takes well under a second.
LEASE_MS = 60_000


@dataclass(slots=True)
class Swept:
    """What one tick did."""

    guests_forgotten: int = 0
    sessions_deleted: int = 0
    guests_kept: int = 0


class GuestSweeper:
    """Sweeps gone guests every ``interval_s`` while the app runs (:meth:`sweep` is one tick)."""

    def __init__(self, services: Services, *, interval_s: float) -> None:
        self._s = services
        self.interval_s = interval_s
        self.index = GuestIndex(redis=services.redis, keys=services.keys, clock=services.clock)
        store = AdminStore(
            redis=services.redis,
            keys=services.keys,
            log=services.log,
            clock=services.clock,
            sessions=services.sessions,
            orphan_days=services.sessions.orphan_days,
        )
        self._deleter = SessionDeleter(services, store)
        self._backfilled = False
        # Guests whose lease this node still holds after their sweep met Redis away.
        self._held: set[str] = set()
        self.backfill_per_tick = BACKFILL_PER_TICK

    def register(self, app: web.Application) -> None:
        """Sweep for the app's lifetime (``app[GUEST_SWEEPER]`` is this sweeper)."""
        app[GUEST_SWEEPER] = self
        app.cleanup_ctx.append(self._lifetime)

    @property
    def idle_ms(self) -> int:
        """How long after its last visit a guest is gone: its idle time, then its last token's life."""
        return (self._s.identities.config.guest_idle_s + self._s.limits.guest_token_ttl_s) * 1000

    async def sweep(self, *, guests: int = GUESTS_PER_TICK, sessions: int = SESSIONS_PER_TICK) -> Swept:
        """One tick: up to ``guests`` gone guests looked at, up to ``sessions`` sessions deleted."""
        swept = Swept()
        await self._release_held()
        if not self._backfilled:
            self._backfilled = await self.index.backfill(
                limit=self.backfill_per_tick, kinds=GONE_WITH_OWNER, skip=self._unreadable
            )
        for user_id in await self.index.idle(idle_ms=self.idle_ms, limit=guests):
            budget = sessions - swept.sessions_deleted
            if budget <= 0:
                break
            if not await self.index.claim(user_id, lease_ms=LEASE_MS):
                continue  # another node is on it
            try:
                await self._sweep_guest(user_id, budget, swept)
            except Exception as exc:
                stop_if_cancelled(exc)
                if redis_away(exc):
                    # Not the guest's fault: it stays due and the pass ends. Redis may already be
                    # back (a failover over by the next step): putting the guest off a day then
                    # would keep what it owned a day longer for a blip.
                    await self._let_go(user_id)
                    raise
                # Something of it that cannot be deleted (a record this server cannot read, a
                # script's error): the others go on, and it is tried again later, not ahead of
                # them at every tick.
                log.exception("guest sweep: %s could not be swept; tried again in a day", user_id)
                await self.index.later(user_id, idle_ms=self.idle_ms, delay_ms=RETRY_LATER_MS)
                await self.index.release(user_id)
        return swept

    def _unreadable(self, session_id: str, exc: Exception) -> bool:
        """Whether the listing of older guests passes by a session it could not read: yes, logged,
        unless Redis was away (the pass ends; the listing resumes at that page next pass)."""
        stop_if_cancelled(exc)
        if redis_away(exc):
            return False
        _unreadable_log.exception(
            f"guest sweep: session {session_id} could not be read while listing older guests; skipped", exc
        )
        return True

    async def _let_go(self, user_id: str) -> None:
        """Release the lease of a guest whose sweep met Redis away, now or (Redis not answering
        yet, or this client's connection to it still the broken one) first thing next pass, so
        that pass takes the guest at once rather than after ``LEASE_MS``."""
        self._held.add(user_id)
        with contextlib.suppress(*REDIS_AWAY):
            await self._release_held()

    async def _release_held(self) -> None:
        for user_id in sorted(self._held):
            await self.index.release(user_id)
            self._held.discard(user_id)

    async def _sweep_guest(self, user_id: str, budget: int, swept: Swept) -> None:
        """Sweep one claimed guest: up to ``budget`` of its sessions, then itself when none are left."""
        if await self.index.standing(user_id, idle_ms=self.idle_ms) is not Standing.GONE:
            swept.guests_kept += 1
            await self.index.release(user_id)
            return
        listed = await self.index.listed(user_id, limit=budget)
        swept.sessions_deleted += await self._delete_listed(user_id, listed)
        if len(listed) < budget:  # its lists are empty now: nothing of it is left but itself
            await self.index.forget(user_id)
            swept.guests_forgotten += 1
        else:
            await self.index.release(user_id)

    async def _delete_listed(self, user_id: str, session_ids: list[str]) -> int:
        """Delete the listed sessions the guest owned of a kind that goes with it; the rest
        (patterns, sessions gone already) only leave its lists. How many were deleted."""
        deleted = 0
        for session_id in session_ids:
            found: Any = await self._s.redis.hmget(self._s.keys.session(session_id), ["kind", "owner_id"])
            kind, owner_id = found
            if kind in GONE_WITH_OWNER and owner_id == user_id:
                with contextlib.suppress(CodedError):  # gone meanwhile: session_not_found
                    await self._deleter.delete(session_id, actor=f"retention:{user_id}")
                    deleted += 1
        # Whatever its kind's on_delete dropped from the lists already; the kept ones too.
        await self.index.unlist(user_id, session_ids)
        return deleted

    async def _lifetime(self, _: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(self._sweep_forever(), name="guest-sweeper")
        yield
        task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait({task}, timeout=STOP_WAIT_S)

    async def _sweep_forever(self) -> None:
        while not cancelled():
            await asyncio.sleep(self.interval_s)
            try:
                await self._drain()
            except REDIS_AWAY as exc:
                stop_if_cancelled(exc)
                log.warning("guest sweep: %s", exc)
            except Exception:  # a bug must not end the sweeps for good: the next tick tries again
                log.exception("guest sweep failed")

    async def _drain(self) -> None:
        """Ticks until one leaves nothing due: a backlog goes at once, a bounded tick at a time."""
        while not cancelled():
            swept = await self.sweep()
            if swept.guests_forgotten or swept.sessions_deleted:
                log.info("guest sweep: %s", swept)
            full = swept.sessions_deleted >= SESSIONS_PER_TICK
            if not full and swept.guests_forgotten + swept.guests_kept < GUESTS_PER_TICK:
                return
            await asyncio.sleep(0)  # let the node's own work in between ticks


GUEST_SWEEPER = web.AppKey("guest_sweeper", GuestSweeper)
