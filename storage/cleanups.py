"""What deletions still owe outside their session's own keys, kept until it is done.

A session's keys go in one script, but what its kind keeps elsewhere (other hash slots, files
on disk) cannot join it. So the deletion notes what it owes first (:meth:`OwedCleanups.note`,
with the record as it was), and clears the note once that second step has finished. A note
left behind -- the step failed, or the process was killed between the two -- is found by
:meth:`OwedCleanups.owed` and finished later (``handlers.cleanups``).
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from storage.clock import Clock
from storage.keys import Keys


class OwedCleanups:
    """The hash of owed follow-ups: session id -> JSON ``{"record", "since_ms"}``."""

    def __init__(self, *, redis: Redis, keys: Keys, clock: Clock) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock

    async def note(self, session_id: str, record: dict[str, str]) -> None:
        """Record, before a deletion runs, that its follow-up is owed."""
        entry = json.dumps({"record": record, "since_ms": self._clock.now_ms()}, separators=(",", ":"))
        await self._redis.hset(self._keys.cleanups(), session_id, entry)

    async def done(self, session_id: str) -> None:
        """Nothing is owed for the session any more (done, or nothing was deleted)."""
        await self._redis.hdel(self._keys.cleanups(), session_id)

    async def owed(self, *, older_than_ms: int, limit: int) -> list[tuple[str, dict[str, str]]]:
        """Up to ``limit`` follow-ups noted more than ``older_than_ms`` ago: (session id, record).

        An entry that does not parse is dropped: it names nothing that could be cleaned.
        """
        raw: Any = await self._redis.hgetall(self._keys.cleanups())
        cutoff = self._clock.now_ms() - older_than_ms
        owed: list[tuple[str, dict[str, str]]] = []
        for session_id, text in sorted(raw.items()):
            try:
                entry = json.loads(text)
                record = {str(k): str(v) for k, v in dict(entry["record"]).items()}
                since_ms = int(entry["since_ms"])
            except (ValueError, KeyError, TypeError):
                await self.done(session_id)
                continue
            if since_ms <= cutoff:
                owed.append((session_id, record))
                if len(owed) >= limit:
                    break
        return owed
