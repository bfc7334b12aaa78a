"""Redis losing its last writes, as the fault tests reproduce it from outside.

An OS crash under ``appendfsync everysec`` or a failover to a lagging replica brings Redis back
with some keys as they were a moment ago. A test DUMPs those keys (:meth:`Rollback.take`), lets
the server write on, then RESTOREs them behind the server's back (:meth:`Rollback.restore`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis


class Rollback:
    """Keys as they were: what a Redis that loses writes comes back with.

    Either the named ``keys`` (each must exist when taken), or every key of a session's hash slot
    (``session_id``, but the ``spared`` ones): then a key of the slot written after the snapshot
    is deleted by :meth:`restore` too, as it was lost with the rest."""

    def __init__(
        self,
        raw: Redis,
        *,
        keys: Iterable[str] | None = None,
        session_id: str | None = None,
        spared: Iterable[str] = (),
    ) -> None:
        if (keys is None) == (session_id is None):
            raise ValueError("name the keys or the session, one of the two")
        self._raw = raw
        self._named = None if keys is None else list(keys)
        self._pattern = None if session_id is None else f"*{{{session_id}}}*"
        self._spared = set(spared)
        self._dumps: dict[str, bytes] = {}

    async def _keys(self) -> set[str]:
        if self._named is not None:
            return set(self._named)
        return {k.decode() async for k in self._raw.scan_iter(match=self._pattern)} - self._spared

    async def take(self) -> None:
        for key in await self._keys():
            dumped: Any = await self._raw.dump(key)
            self._dumps[key] = dumped

    async def restore(self) -> None:
        if self._pattern is not None:
            for key in await self._keys() - set(self._dumps):
                await self._raw.delete(key)  # written after the snapshot: lost
        for key, value in self._dumps.items():
            await self._raw.restore(key, 0, value, replace=True)
