"""Audio and material bytes stored per user (and per guest address) in a quota day.

One counter per payer, created with the day's expiry on its first charge and incremented by
each stored chunk's size: a user who uploads their quota waits for the day to end. Concurrent
uploads may each pass the check before any is charged: the overshoot is bounded by the uploads
one payer may have in flight (``VoiceConfig.uploads_in_flight``) times the chunk size cap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.asyncio import Redis

from storage.failures import REDIS_AWAY
from storage.keys import Keys

log = logging.getLogger(__name__)

QUOTA_WINDOW_S = 86_400


@dataclass(frozen=True, slots=True)
class UploadQuota:
    """Checks and charges the payers of an upload (``u:<user>``, ``a:<address>``)."""

    redis: Redis
    keys: Keys
    limit_bytes: int

    async def remaining(self, payers: list[str]) -> int:
        """Bytes the most constrained payer may still store today (0 or less: none)."""
        # One GET each, pipelined (one round trip): each payer's counter has its own hash tag, so
        # on Redis Cluster they live in different slots, where an MGET of them is refused
        # (every guest upload, paid by the user and the address, was answered 503 there).
        async with self.redis.pipeline(transaction=False) as pipe:
            for payer in payers:
                pipe.get(self.keys.upload_bytes(payer))
            used = await pipe.execute()
        return self.limit_bytes - max(int(value or 0) for value in used)

    async def charge(self, payers: list[str], size_bytes: int) -> None:
        """Count ``size_bytes`` against every payer (each counter expires a day after it began)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for payer in payers:
                key = self.keys.upload_bytes(payer)
                pipe.set(key, 0, ex=QUOTA_WINDOW_S, nx=True)  # SET NX EX: Redis 6.2 has no EXPIRE NX
                pipe.incrby(key, size_bytes)
            await pipe.execute()

    async def charge_stored(self, payers: list[str], size_bytes: int) -> None:
        """:meth:`charge` for an upload stored already: a charge Redis did not take (a cut
        connection) is logged, not raised. The upload must not be answered failed once it is
        stored (its retry would store another copy); the quota misses one upload's bytes."""
        try:
            await self.charge(payers, size_bytes)
        except REDIS_AWAY as exc:
            log.warning("an upload of %d bytes was stored but not counted against the quota: %s", size_bytes, exc)
