"""Audio and material bytes stored per user (and per guest address) in a quota day.

One counter per payer, created with the day's expiry on its first reservation: a user who
uploads their quota waits for the day to end. An upload reserves its bytes before its body is
read (``quota_reserve.lua``: the check and the charge in one step, so concurrent uploads of one
payer can never take more than the quota between them) and settles to what it stored once it
is done, giving the rest back (all of it for a refused or cut upload, or a duplicate).

A guest's two payers (``u:<user>``, ``a:<address>``) each have their own hash tag, so on Redis
Cluster they live in different slots and no one script may touch both: each is reserved on its
own, in turn, and a refusal by the second gives the first its bytes back. Neither counter ever
passes the quota; a reservation refused because of another's that is given back a moment later
is the price of that.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from redis.asyncio import Redis

from storage.failures import REDIS_AWAY
from storage.keys import Keys
from storage.scripts import Script, plain_script, refused

log = logging.getLogger(__name__)

QUOTA_WINDOW_S = 86_400


@dataclass(slots=True)
class Reservation:
    """Bytes counted against each payer for one upload, before it is stored."""

    quota: UploadQuota
    grants: list[tuple[str, int]] = field(default_factory=list)  # (counter key, bytes reserved)
    settled: bool = False

    @property
    def bytes(self) -> int:
        """The most the upload may store: the least any payer granted."""
        return min((granted for _, granted in self.grants), default=0)

    async def grow(self, to_bytes: int) -> bool:
        """Reserve more, so the upload may store ``to_bytes``: False (the grants as they were,
        but for any a payer added) when a payer has not that much left.

        An upload reserves what its body may hold, its form's fields and boundaries too, so one
        that began while another held the last of the quota may have been granted less than its
        file; by the time that file is read, the other has given its surplus back."""
        for index, (key, granted) in enumerate(self.grants):
            if granted >= to_bytes:
                continue
            more = to_bytes - granted
            result = await self.quota.reserve_on(key, wanted=more, least=more)
            if result is None:
                return False
            self.grants[index] = (key, granted + result)
        return True

    async def settle(self, stored_bytes: int) -> None:
        """Keep ``stored_bytes`` (0: a duplicate, a refused or failed upload) and give the rest back.

        Never raises for Redis being away: the upload is stored (or already failed) either way,
        and the payer is then charged its whole reservation, never less than it stored. Runs
        shielded, so a handler cancelled meanwhile (its client left) still gives the bytes back.
        """
        if self.settled:
            return
        self.settled = True
        give_back = [(key, granted - stored_bytes) for key, granted in self.grants if granted > stored_bytes]
        if give_back:
            await asyncio.shield(self.quota.give_back(give_back))

    async def cancel(self) -> None:
        """Give every reserved byte back (the upload stored nothing)."""
        await self.settle(0)


@dataclass(slots=True)
class UploadQuota:
    """Reserves and settles the payers of an upload (``u:<user>``, ``a:<address>``)."""

    redis: Redis
    keys: Keys
    limit_bytes: int
    # The counters of chat-bot material bytes (Keys.material_bytes), not of every upload's.
    materials: bool = False
    _reserve: Script = field(init=False)
    _give_back: Script = field(init=False)

    def __post_init__(self) -> None:
        self._reserve = plain_script(self.redis, "voice/quota_reserve.lua")
        self._give_back = plain_script(self.redis, "voice/quota_give_back.lua")

    async def reserve(self, payers: list[str], *, wanted: int, least: int = 1) -> Reservation | None:
        """Up to ``wanted`` bytes from every payer, at least ``least``; None (nothing held) when a
        payer has less left. The upload may then store :attr:`Reservation.bytes` at most."""
        reservation = Reservation(self)
        try:
            for payer in payers:
                key = self.keys.material_bytes(payer) if self.materials else self.keys.upload_bytes(payer)
                # Each payer grants at most what the ones before it did: the rest would only
                # be given back.
                asked = reservation.bytes if reservation.grants else wanted
                granted = await self.reserve_on(key, wanted=asked, least=least)
                if granted is None:
                    await reservation.cancel()
                    return None
                reservation.grants.append((key, granted))
        except BaseException:
            await reservation.cancel()
            raise
        return reservation

    async def reserve_on(self, key: str, *, wanted: int, least: int) -> int | None:
        """Up to ``wanted`` bytes (at least ``least``) from one payer's counter, or None."""
        result = await self._reserve(keys=[key], args=[wanted, least, self.limit_bytes, QUOTA_WINDOW_S])
        return None if refused(result) else int(result[0])

    async def give_back(self, grants: list[tuple[str, int]]) -> None:
        """Take ``bytes`` off each counter (logged, not raised, when Redis does not answer)."""
        for key, bytes_back in grants:
            try:
                await self._give_back(keys=[key], args=[bytes_back])
            except REDIS_AWAY as exc:
                log.warning("%d reserved upload bytes were not given back to %s: %s", bytes_back, key, exc)
