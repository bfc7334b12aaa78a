"""A sweep over an "id by due time" sorted set: claim what is due, look at it, settle it.

Two sweepers use it: listening histories with silent sessions (storage/listening) and voice
sessions whose recording lease may have run out (storage/voice/recording.py). A node claims
the entries due now under a claim of its own (``due_claim.lua``: others skip them until it
runs out), looks at each one (the caller's step, in the entry's own slot), and settles it
(``due_settle.lua``: due again later, or gone). The set lives apart from the entries' keys (on
Redis Cluster its own shard), so claiming and settling are steps of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from storage.failures import SHARD_AWAY
from storage.scripts import plain_script

# What looking at one entry gives: (how many things it finished, e.g. sessions closed; when the
# entry is due again, ms, or None when it is done with).
Look = Callable[[str], Awaitable[tuple[int, int | None]]]


class DueSweep:
    """Claim, look, settle over one due set; the claimed entries are looked at together."""

    def __init__(self, redis: Redis, *, claim_ms: int) -> None:
        self._claim_ms = claim_ms
        self._claim = plain_script(redis, "listening/due_claim.lua")
        self._settle = plain_script(redis, "listening/due_settle.lua")

    async def sweep(self, due_key: str, now_ms: int, limit: int, look: Look) -> tuple[int, int]:
        """Sweep the entries of ``due_key`` due at ``now_ms`` (at most ``limit``): (claimed, finished).

        The claimed entries' looks go at once, then their settles: one round trip each on a lean
        link, not two per entry (one after another, a thousand recordings paused by hand cost
        the sweeper two thousand round trips). An entry whose look fails stays claimed and is
        swept again when its claim runs out; the first failure is raised once the others are
        settled.
        """
        claim_until = now_ms + self._claim_ms
        claimed: Any = await self._claim(keys=[due_key], args=[now_ms, claim_until, limit])
        ids = [raw.decode() if isinstance(raw, bytes) else str(raw) for raw in claimed]
        looks = await asyncio.gather(*(look(entry) for entry in ids), return_exceptions=True)
        finished = 0
        settles: list[Awaitable[Any]] = []
        failure: BaseException | None = None
        for entry, outcome in zip(ids, looks, strict=True):
            if isinstance(outcome, BaseException):
                failure = failure or outcome
                continue
            count, next_due = outcome
            finished += count
            settles.append(
                self._settle(keys=[due_key], args=[entry, claim_until, "" if next_due is None else str(next_due)])
            )
        await asyncio.gather(*settles)
        if failure is not None:
            raise failure
        return len(ids), finished


class LaterEntries:
    """Due-set entries whose ZADD met their shard away, written by the node's next sweep.

    On Redis Cluster a due set is one key, on one shard. While that shard had no master (a
    failover's seconds), every recording start and every listening play, on every shard, was
    refused ``unavailable`` with it, though their own sessions' shards answered (audit
    "frozenmaster"). The change goes ahead instead, and its entry waits here until a sweep of
    this node writes it (every few seconds; the first after the shard is back). A node that
    stops before that leaves the entry unwritten: that session is then not swept (a recording
    lease left to run out keeps showing "recording"; a play left silent stays open) until its
    next start or play writes one. Only a node's failure during another's failover does that.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._kept: dict[tuple[str, str], int] = {}  # (due set, member) -> due (ms)

    def __len__(self) -> int:
        return len(self._kept)

    async def add(self, due_key: str, member: str, due_ms: int) -> None:
        """``ZADD due_key due_ms member`` now, or, its shard away, by the next :meth:`write`."""
        try:
            await self._redis.zadd(due_key, {member: due_ms})
        except SHARD_AWAY:
            self.keep(due_key, member, due_ms)

    def keep(self, due_key: str, member: str, due_ms: int) -> None:
        """Keep an entry to write later (the latest due of a member kept twice)."""
        self._kept[due_key, member] = max(due_ms, self._kept.get((due_key, member), due_ms))

    async def write(self) -> int:
        """Write the kept entries, first to last; those not written stay kept, and the first
        failure is raised (the sweep's round says it and tries again). How many were written."""
        written = 0
        for (due_key, member), due_ms in list(self._kept.items()):
            await self._redis.zadd(due_key, {member: due_ms})
            if self._kept.get((due_key, member)) == due_ms:  # not kept again meanwhile
                del self._kept[due_key, member]
            written += 1
        return written
