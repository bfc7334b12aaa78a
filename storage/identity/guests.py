"""Guests that own something: the index of their last visits, and forgetting one that has gone.

A guest (``POST /api/auth/guest``, no account, no passkey) that owns a voice or stream session,
a listening history or a clip is listed in :meth:`Keys.guests_owning`, scored by its last visit
(``Identities.keep``). Its profile and devices expire ``guest_idle_s`` after that visit; what it
owned is deleted by ``handlers.guest_retention`` once it has been idle that long and its last
access token has run out too, so it can no longer come back. Every step here touches one hash
slot: the user's own keys share ``{u:<id>}``; each device, and the index, are steps of their own.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, cast

from redis.asyncio import Redis

from storage.clock import Clock
from storage.identity.repository import GUEST_PREFIX
from storage.keys import Keys
from storage.scripts import plain_script


class Standing(enum.Enum):
    """What a guest listed as idle turned out to be, looked at again."""

    GONE = "gone"  # no visit for that long: its profile and devices have expired
    BACK = "back"  # a visit since it was listed: kept
    KEPT = "kept"  # saved with a passkey or made an admin: an account now, kept for good


class GuestIndex:
    """The guests owning something, by last visit, and the removal of a gone one's own keys."""

    def __init__(self, *, redis: Redis, keys: Keys, clock: Clock) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._backfill_page = plain_script(redis, "identity/backfill_page.lua")

    async def idle(self, *, idle_ms: int, limit: int) -> list[str]:
        """Up to ``limit`` guests whose last visit is more than ``idle_ms`` ago, longest idle first."""
        cutoff_ms = self._clock.now_ms() - idle_ms
        found: Any = await self._redis.zrangebyscore(self._keys.guests_owning(), "-inf", cutoff_ms, start=0, num=limit)
        return [str(user_id) for user_id in found]

    async def backfill(
        self, *, limit: int, kinds: frozenset[str], skip: Callable[[str, Exception], bool] | None = None
    ) -> bool:
        """List the guests that came to own a session of ``kinds`` before this index existed (they
        were kept for good then), by their last visit as their devices say; ``limit`` sessions of
        the global index read per call, from where the last call stopped. True once all are read.

        Listing one twice is harmless (``NX``), so a call cut off midway, or two nodes at once,
        only read some sessions again.

        A session whose record (or its owner's) cannot be read (a key of another type, a
        ``created_at`` that is no number) goes to ``skip``: True passes it by and the listing goes
        on; False (Redis away: the caller decides) re-raises, and the next call starts at this page
        again. Without ``skip`` every failure raises. One bad record must not stop the listing, or
        every later pass would fail at it for good.
        """
        k = self._keys
        cursor: Any = await self._redis.get(k.guests_backfill())
        if cursor == "done":
            return True
        low, after = _backfill_cursor(cursor)
        flat: Any = await self._backfill_page(keys=[k.all_sessions()], args=[low, after, limit])
        page = list(zip(flat[::2], flat[1::2], strict=True))
        for session_id, _ in page:
            try:
                await self._list_owner(str(session_id), kinds)
            except Exception as exc:
                if skip is None or not skip(str(session_id), exc):
                    raise
        if len(page) < limit:
            await self._redis.set(k.guests_backfill(), "done")
            return True
        # The next page goes on after this one's last session (backfill_page.lua): a millisecond
        # may hold more sessions than a page (an import, a burst), and going on at the next
        # millisecond lost the rest of them.
        last_id, last_ms = page[-1]
        await self._redis.set(k.guests_backfill(), f"{int(float(last_ms))}:{last_id}")
        return False

    async def _list_owner(self, session_id: str, kinds: frozenset[str]) -> None:
        k = self._keys
        kind, owner, created = cast(
            list[str | None], await self._redis.hmget(k.session(session_id), ["kind", "owner_id", "created_at"])
        )
        if kind not in kinds or not owner or not owner.startswith(GUEST_PREFIX):
            return
        if await self._kept(owner):
            return
        last_ms = await self._last_visit_ms(owner, float(created or 0))
        await self._redis.zadd(k.guests_owning(), {owner: last_ms}, nx=True)

    async def _kept(self, user_id: str) -> bool:
        """Whether the guest was saved with a passkey or made an admin: an account now."""
        marks = cast(list[str | None], await self._redis.hmget(self._keys.user_profile(user_id), ["saved", "admin"]))
        return "1" in marks

    async def _last_visit_ms(self, user_id: str, known_ms: float) -> int:
        """The later of ``known_ms`` and the last use of the guest's devices."""
        device: Any = await self._redis.zrevrange(self._keys.user_families(user_id), 0, 0, withscores=True)
        return int(max([known_ms, *(score for _, score in device)]))

    async def claim(self, user_id: str, *, lease_ms: int) -> bool:
        """A lease on sweeping ``user_id``; False when another node holds one. Every step of a
        sweep is safe to repeat, so the lease only keeps nodes from doing one guest's work twice."""
        return bool(await self._redis.set(self._keys.guest_sweep_lease(user_id), "1", nx=True, px=lease_ms))

    async def later(self, user_id: str, *, idle_ms: int, delay_ms: int) -> None:
        """Look at ``user_id`` again ``delay_ms`` from now (as if it had visited then, less ``idle_ms``)."""
        again_ms = self._clock.now_ms() - idle_ms + delay_ms
        await self._redis.zadd(self._keys.guests_owning(), {user_id: again_ms}, xx=True, gt=True)

    async def release(self, user_id: str) -> None:
        """Let the next sweep (any node's) go on with ``user_id`` at once."""
        await self._redis.delete(self._keys.guest_sweep_lease(user_id))

    async def standing(self, user_id: str, *, idle_ms: int) -> Standing:
        """Whether the guest, listed as idle past ``idle_ms``, has truly gone; one that has not
        is listed again (by its last visit) or dropped (kept for good)."""
        k = self._keys
        if await self._kept(user_id):
            await self._redis.zrem(k.guests_owning(), user_id)
            return Standing.KEPT
        # Read again (a visit since the index was read), and a device's last use, which a visit
        # whose index step failed still wrote.
        listed_ms: Any = await self._redis.zscore(k.guests_owning(), user_id)
        last_ms = await self._last_visit_ms(user_id, float(listed_ms or 0))
        if last_ms > self._clock.now_ms() - idle_ms:
            await self._redis.zadd(k.guests_owning(), {user_id: last_ms}, gt=True)
            return Standing.BACK
        return Standing.GONE

    async def listed(self, user_id: str, *, limit: int) -> list[str]:
        """Up to ``limit`` ids from the gone guest's lists: every kind it made, its voice and
        stream sessions, its listening history (a list may hold what another has lost)."""
        k = self._keys
        found: list[str] = []
        for key in (k.user_recent(user_id), k.user_sessions(user_id), k.user_streams(user_id)):
            ids: Any = await self._redis.zrange(key, 0, limit - 1)
            found.extend(str(i) for i in ids if str(i) not in found)
            if len(found) >= limit:
                return found[:limit]
        history: Any = await self._redis.get(k.listening_history(user_id))
        if history and str(history) not in found:
            found.append(str(history))
        return found[:limit]

    async def unlist(self, user_id: str, session_ids: list[str]) -> None:
        """Drop ids from the gone guest's lists (sessions kept without it, or gone already)."""
        if not session_ids:
            return
        k = self._keys
        history: Any = await self._redis.get(k.listening_history(user_id))
        async with self._redis.pipeline(transaction=True) as pipe:  # one slot: {u:<id>}
            for key in (k.user_recent(user_id), k.user_sessions(user_id), k.user_streams(user_id)):
                pipe.zrem(key, *session_ids)
            if history and str(history) in session_ids:
                pipe.delete(k.listening_history(user_id))
            await pipe.execute()

    async def forget(self, user_id: str) -> None:
        """Remove what is left of the gone guest: its devices, its own keys, its place in the index."""
        k = self._keys
        families: Any = await self._redis.zrange(k.user_families(user_id), 0, -1)
        for family_id in families:  # each device in its own slot
            await self._redis.delete(k.family(str(family_id)), k.family_spent(str(family_id)))
        await self._redis.delete(
            k.user_profile(user_id),
            k.user_families(user_id),
            k.user_recent(user_id),
            k.user_sessions(user_id),
            k.user_streams(user_id),
            k.user_clipped(user_id),
            k.listening_history(user_id),
            k.active_session(user_id),
            k.active_session_seq(user_id),
            k.user_passkeys(user_id),
            k.guest_sweep_lease(user_id),
        )
        await self._redis.zrem(k.guests_owning(), user_id)


def _backfill_cursor(stored: str | None) -> tuple[str, str]:
    """Where the listing goes on: (the last page's last creation time, or ``-inf``; its last
    session id, or ''). A cursor of the version before is a bare time: its sessions are read
    again (listing twice is harmless)."""
    if not stored:
        return "-inf", ""
    low, _, after = stored.partition(":")
    return low, after
