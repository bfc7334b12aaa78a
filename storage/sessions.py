"""What every session has, whatever its kind: the record's ``kind`` and owner, and the indexes.

A session record is the hash ``keys.session(id)``; every kind stores at least ``id``, ``kind``,
``owner_id`` (empty for sessions nobody owns, such as pattern links) and ``created_at`` there.
The global and per-user indexes live in other hash slots, so they are written in their own step
(never in a session's Lua script: that would cross slots on Redis Cluster). They are written
*before* the session itself: a failure between the two leaves an index entry without a record,
which listings skip, never a record no listing can find.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from storage.keys import Keys


@dataclass(frozen=True, slots=True)
class SessionMeta:
    """The part of a record that access rules need."""

    session_id: str
    kind: str
    owner_id: str


class SessionDirectory:
    """Kind lookup and the cross-kind indexes (all sessions, each user's recent sessions)."""

    def __init__(self, *, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def meta(self, session_id: str) -> SessionMeta | None:
        """Kind and owner of a session, or None when there is no such session."""
        kind, owner_id = await self._redis.hmget(self._keys.session(session_id), "kind", "owner_id")  # type: ignore[misc]
        if not kind:
            return None
        return SessionMeta(session_id=session_id, kind=str(kind), owner_id=str(owner_id or ""))

    async def index(self, *, session_id: str, owner_id: str, created_ms: int) -> None:
        """Add a new session to the global index and, when it has an owner, to theirs."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self._keys.all_sessions(), {session_id: created_ms})
            if owner_id:
                pipe.zadd(self._keys.user_recent(owner_id), {session_id: created_ms})
            await pipe.execute()

    async def unindex(self, *, session_id: str, owner_id: str) -> None:
        """Drop a deleted session from the indexes."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self._keys.all_sessions(), session_id)
            if owner_id:
                pipe.zrem(self._keys.user_recent(owner_id), session_id)
            await pipe.execute()

    async def recent(self, owner_id: str, *, limit: int) -> list[dict[str, str]]:
        """The user's sessions of every kind, newest first, as stored records."""
        ids: Any = await self._redis.zrevrange(self._keys.user_recent(owner_id), 0, limit - 1)
        async with self._redis.pipeline(transaction=False) as pipe:
            for session_id in ids:
                pipe.hgetall(self._keys.session(session_id))
            records: list[dict[str, str]] = await pipe.execute()
        return [record for record in records if record.get("kind")]
