"""Recording leases: the server never shows a recording that nobody is making (issue 23).

A recorder that sets ``recording`` (or ``cutting``) over Socket.IO takes the session's lease
(``rec_lease``, a string naming its node and connection, with a TTL) in the same step as the
status. Its node renews the lease while the connection lives and ends it when the connection
goes, which pauses the session at once. When the node itself dies, nobody renews: the lease runs
out and the sweeper of any node pauses the session. Either way the change is the ordinary
``session_status`` event (with ``reason: "recorder_gone"``), so every subscriber hears it.

The sweeper finds candidates in one sorted set (``voice:recording_due``), scored by when to look.
A session enters it before its lease is taken (so a node dying between the two steps leaves an
entry, never an unswept lease), and a sweep that finds the lease still held looks again when it
would run out. The set lives apart from the sessions' keys (on Redis Cluster its own shard), so
claiming and settling are steps of their own, as for the listening sweeper.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from protocol import events as etypes
from storage.clock import Clock
from storage.due import DueSweep, LaterEntries
from storage.events import EventLog
from storage.keys import Keys
from storage.scripts import event_script, plain_script

# How long a node holds a claimed entry before another node may sweep it (its sweep is quick).
SWEEP_CLAIM_MS = 10_000


class RecordingLeases:
    """The recording leases of voice sessions: renew, release, sweep."""

    def __init__(self, *, redis: Redis, keys: Keys, log: EventLog, clock: Clock, lease_ms: int) -> None:
        self._redis = redis
        self._keys = keys
        self._log = log
        self._clock = clock
        self.lease_ms = lease_ms
        self._end = event_script(redis, "voice/recording_end.lua")
        self._renew = plain_script(redis, "voice/recording_renew.lua")
        self._due = DueSweep(redis, claim_ms=SWEEP_CLAIM_MS)
        self._due_later = LaterEntries(redis)  # entries whose shard was away: the next sweep's

    def due_entry(self, session_id: str) -> tuple[Any, ...]:
        """The command that puts the session in the sweeper's set, due when a lease taken now
        would run out; its caller sends it ahead of the status script (``EventLog.run``'s
        ``ahead``: in the same write on a lean link, else awaited first)."""
        # A plain overwrite: an entry a node has claimed meanwhile then no longer carries its
        # claim's score, so that node's settle keeps it (due_settle.lua) instead of removing it.
        due = self._clock.now_ms() + self.lease_ms
        return ("ZADD", self._keys.voice_recording_due(), due, session_id)

    async def due_ahead(self, session_id: str) -> tuple[Any, ...] | None:
        """The sweeper's entry of a recording start, before its lease is taken. On a single Redis,
        :meth:`due_entry`, for the status script's caller to send ahead of it (in the same write
        on a lean link: one round trip). On a cluster the set is on a shard of its own: written
        now, or, that shard away (a failover), by this node's next sweep, and the recording goes
        ahead (storage.due.LaterEntries); None then, nothing to send ahead."""
        if not isinstance(self._redis, RedisCluster):
            return self.due_entry(session_id)
        due = self._clock.now_ms() + self.lease_ms
        await self._due_later.add(self._keys.voice_recording_due(), session_id, due)
        return None

    async def renew(self, session_id: str, holder: str) -> bool:
        """Extend ``holder``'s lease; False when it holds it no more (stop renewing)."""
        keys, args = self._renewal(session_id, holder)
        return bool(await self._renew(keys=keys, args=args))

    async def renew_many(self, leases: Sequence[tuple[str, str]]) -> list[bool | Exception]:
        """:meth:`renew` for each ``(session_id, holder)``, all sent at once: what each answered
        (False: no longer held) or the error it met, in order.

        Over the lean link every call is written at once and only their futures are awaited: no
        task or coroutine per lease, so a node renewing a thousand leases holds its loop for a
        fraction of the time a task per renewal took (``bench/lease_renewals.py``). A call that
        cannot go that way is awaited as :meth:`renew`."""
        waits: list[Awaitable[Any]] = []
        for session_id, holder in leases:
            keys, args = self._renewal(session_id, holder)
            sent = self._renew.submit(keys, args)
            waits.append(sent if sent is not None else self._renew_one(keys, args))
        answers: list[bool | Exception] = []
        for outcome in await asyncio.gather(*waits, return_exceptions=True):
            if isinstance(outcome, list):  # a submitted call: its replies, an error reply a value
                outcome = outcome[0]
            if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome  # cancelled: the keeper is stopping
            answers.append(outcome if isinstance(outcome, Exception) else bool(outcome))
        return answers

    async def _renew_one(self, keys: list[str], args: list[Any]) -> Any:
        return [await self._renew(keys=keys, args=args)]  # shaped as a submitted call's replies

    def _renewal(self, session_id: str, holder: str) -> tuple[list[str], list[Any]]:
        """The renewal script's keys and args for ``holder``'s lease of ``session_id``."""
        k = self._keys
        return [k.session(session_id), k.voice_recording_lease(session_id)], [holder, self.lease_ms]

    async def release(self, session_id: str, holder: str) -> int:
        """``holder`` went away: end its lease and pause the session; the event's offset or 0."""
        result = await self._run_end(session_id, "release", holder)
        return int(result[0])

    async def sweep_due(self, *, limit: int = 100) -> tuple[int, int]:
        """Pause the sessions whose lease ran out: (entries claimed, sessions paused)."""
        now = self._clock.now_ms()

        async def look(session_id: str) -> tuple[int, int | None]:
            offset, remaining = await self._run_end(session_id, "sweep", "")
            # A lease still held is looked at again when it would run out.
            return int(int(offset) > 0), now + int(remaining) if int(remaining) > 0 else None

        if self._due_later:
            await self._due_later.write()
        return await self._due.sweep(self._keys.voice_recording_due(), now, limit, look)

    async def _run_end(self, session_id: str, mode: str, holder: str) -> list[Any]:
        k = self._keys
        return await self._log.run(
            self._end,
            session_id,
            keys=[k.session(session_id), k.voice_recording_lease(session_id)],
            args=[mode, holder, etypes.SESSION_STATUS],
        )
