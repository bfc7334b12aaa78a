"""The per-user lock around "no open active session: create one, make it active".

Seed 002 routes a material arriving with no open active session into a new session made
active. Five voice notes forwarded at once arrive as five updates on parallel connections: each
read "none active" before any had made one, and each made its own session. Whoever holds this
lock decides (reads the pointer again, creates if still needed); the others wait for it and then
find the session it made active. The lock lives in the user's slot and expires on its own, so a
holder that died frees it within ``ttl_ms``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from protocol.errors import CodedError, ErrorCode
from storage.keys import Keys
from storage.scripts import plain_script

LOCK_TTL_MS = 5000
# A waiter gives up after two lifetimes of the lock (the holder's and one stalled after it).
WAIT_S = 2 * LOCK_TTL_MS / 1000
FIRST_POLL_S = 0.005
LAST_POLL_S = 0.05


class RouteLock:
    """``held(user_id)``: run a block while holding the user's routing lock."""

    def __init__(self, redis: Redis, keys: Keys, *, ttl_ms: int = LOCK_TTL_MS) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_ms = ttl_ms
        self._unlock = plain_script(redis, "voice/route_unlock.lua")

    @asynccontextmanager
    async def held(self, user_id: str) -> AsyncIterator[None]:
        """Wait for the user's lock (``unavailable`` after :data:`WAIT_S`), hold it for the block."""
        key = self._keys.material_routing(user_id)
        token = secrets.token_hex(16)
        await self._acquire(key, token)
        try:
            yield
        finally:
            await self._unlock(keys=[key], args=[token])

    async def _acquire(self, key: str, token: str) -> None:
        deadline = time.monotonic() + WAIT_S
        poll_s = FIRST_POLL_S
        while not await self._redis.set(key, token, nx=True, px=self._ttl_ms):
            if time.monotonic() > deadline:
                raise CodedError(
                    ErrorCode.UNAVAILABLE, "another material of yours is being routed; try again", retry_after_s=1
                )
            await asyncio.sleep(poll_s)
            poll_s = min(poll_s * 2, LAST_POLL_S)
