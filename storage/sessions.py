"""What every session has, whatever its kind: the record's ``kind`` and owner, and the indexes.

A session record is the hash ``keys.session(id)``; every kind stores at least ``id``, ``kind``,
``owner_id`` (empty for sessions nobody owns, such as pattern links) and ``created_at`` there.
The global and per-user indexes live in other hash slots, so they are written in their own step
(never in a session's Lua script: that would cross slots on Redis Cluster). They are written
*before* the session itself: a failure between the two leaves an index entry without a record,
which listings skip, never a record no listing can find.

The admin counters and indexes (counts by kind, creation, last access, last change, size;
``storage/admin/repository.py`` reads them) share the ``{admin}`` hash tag and are updated in a separate
step right after each of these: :meth:`SessionDirectory.index` and ``unindex`` on create and
delete, :meth:`SessionDirectory.touch` when a session is looked up through the kind registry
(at most once a minute per session and node). So the admin metrics never scan every key; an
admin ``recalculate`` rebuilds them from the data when they drift.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from storage.clock import Clock
from storage.failures import REDIS_AWAY
from storage.keys import Keys
from storage.scripts import plain_script

log = logging.getLogger(__name__)

# A session's access time and size are refreshed at most this often per node: a lookup on
# every event must not cost a write on every event.
TOUCH_INTERVAL_MS = 60_000
# Sessions whose last touch a node remembers; past it, the memory is dropped and started anew.
TOUCH_MEMORY = 10_000
# How long a stopping node gives the touches still trailing (their sessions' last measures).
CLOSE_TOUCHES_S = 5.0
# Sessions whose kind and owner a node remembers for subscriptions (see SessionDirectory.known).
KNOWN_MEMORY = 10_000
DAY_MS = 86_400_000
# The record field in which a kind counts the bytes of the files it keeps outside Redis: a voice
# session's audio, on disk or in S3 (storage/voice/lua/chunk_add.lua keeps it, each file once).
# The admin figures keep them apart from the sizes in Redis (seed 001's "large sessions" are of
# what Redis holds), and the storage cost counts both: the audio is most of what a server keeps.
FILES_FIELD = "storage_bytes"
# A kind whose sessions each have a part, a session of its own deleted with it -> the record
# field naming that part. A stream and its audience (storage/streams/audience.py): the kinds'
# names, not imported, as storage.streams imports this module.
PARTS = {"stream": "audience_id"}
# Each of a session and its part is accessed when the other is (SessionDirectory._record): the
# record field naming the other one, by kind.
COMPANIONS = {**PARTS, "stream_audience": "stream_id"}


def _ignore(kind: str) -> None:
    """The default :attr:`SessionDirectory.on_created`: nobody counts."""


async def _ignore_owner(user_id: str) -> None:
    """The default :attr:`SessionDirectory.on_owned`: no identity store to tell."""


def month_field(prefix: str, now_ms: int) -> str:
    """The operation counter field of ``now_ms``'s month (``reads:202611``)."""
    moment = datetime.datetime.fromtimestamp(now_ms / 1000, tz=datetime.UTC)
    return f"{prefix}:{moment:%Y%m}"


def admin_set_keys(keys: Keys, kind: str) -> list[str]:
    """The keys of ``admin/set.lua`` for a session of ``kind`` (``admin/index.lua`` takes these
    and the operation counters)."""
    return [
        keys.admin_kind_of(),
        keys.admin_created(kind),
        keys.admin_created("*"),
        keys.admin_accessed(kind),
        keys.admin_accessed("*"),
        keys.admin_updated(),
        keys.admin_size(),
        keys.admin_remixes(),
    ]


def admin_remove_keys(keys: Keys, kind: str) -> list[str]:
    """The keys of ``admin/remove.lua`` for a session of ``kind``: set.lua's, the kinds' byte
    totals, and the files' bytes per session and per kind."""
    return [*admin_set_keys(keys, kind), keys.admin_bytes(), keys.admin_files(), keys.admin_file_bytes()]


def admin_touch_keys(keys: Keys, kind: str) -> list[str]:
    """The keys of ``admin/touch.lua`` for a session of ``kind``."""
    return [
        keys.admin_kind_of(),
        keys.admin_accessed(kind),
        keys.admin_accessed("*"),
        keys.admin_updated(),
        keys.admin_size(),
        keys.admin_bytes(),
        keys.admin_ops(),
        keys.admin_created(kind),
        keys.admin_created("*"),
        keys.admin_remixes(),
        keys.admin_files(),
        keys.admin_file_bytes(),
    ]


@dataclass(frozen=True, slots=True)
class Measured:
    """What :meth:`SessionDirectory.measure` found of one session."""

    updated_ms: int  # its last event's time (0 without events)
    size: int  # what Redis holds for it, bytes (0: no record)
    files: int  # the bytes of the files it keeps outside Redis (FILES_FIELD)


@dataclass(frozen=True, slots=True)
class Access:
    """A page load's access: the access before it and whether that made the session an orphan."""

    previous_ms: int
    orphaned: bool
    orphan_days: int

    def public(self) -> dict[str, Any]:
        """The fields a session page's load answers with (its orphan banner reads them)."""
        return {"orphaned": self.orphaned, "orphan_days": self.orphan_days}


@dataclass(frozen=True, slots=True)
class SessionMeta:
    """The part of a record that access rules need (neither changes in a session's life)."""

    session_id: str
    kind: str
    owner_id: str
    created_ms: int = 0


class SessionDirectory:
    """Kind lookup and the cross-kind indexes (all sessions, each user's recent sessions)."""

    def __init__(self, *, redis: Redis, keys: Keys, clock: Clock | None = None, orphan_days: int = 90) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock or Clock()
        self.orphan_days = orphan_days
        self._admin_index = plain_script(redis, "admin/index.lua")
        self._admin_remove = plain_script(redis, "admin/remove.lua")
        self._admin_touch = plain_script(redis, "admin/touch.lua")
        self._accessed_script = plain_script(redis, "core/accessed.lua")
        self._touched_ms: dict[str, int] = {}
        self._known: dict[str, SessionMeta] = {}
        # Told the kind of every session this process creates (the server wires it to the
        # sessionhub_sessions_created counter; storage knows no metrics).
        self.on_created: Callable[[str], None] = _ignore
        # Told the user id of whoever came to own something (a session, a clip): the server
        # wires it to the identity store's keep, so an identity made by a passing visit is kept
        # from then on, not forgotten after its guest idle time (storage/identity).
        self.on_owned: Callable[[str], Awaitable[object]] = _ignore_owner
        # A kind's keys besides the record and log (its clips, chunks, history...), by kind
        # name and session id: wired to the kinds' ``owned_keys`` (handlers.kinds), so a
        # session's size counts them. The dashboard's storage counted the record and log only:
        # a stream's clips, a voice session's chunk list, never (the fourth field audit).
        self.owned_keys: Callable[[str, str], Sequence[str]] = _no_keys
        self._pending: set[asyncio.Task[int | None]] = set()
        # A use within the interval of the session's last touch: one more touch when it ends
        # (:meth:`_trail`), by session id.
        self._trailing: dict[str, asyncio.TimerHandle] = {}
        self._closing = False

    async def meta(self, session_id: str) -> SessionMeta | None:
        """Kind and owner of a session, or None when there is no such session.

        A lookup is an access: it refreshes the session's admin access time (see :meth:`touch`)
        in the background, so that the lookup never waits for bookkeeping.
        """
        found: Any = await self._redis.hmget(self._keys.session(session_id), "kind", "owner_id", "created_at")
        kind, owner_id, created_at = found
        if not kind:
            return None
        owner = str(owner_id or "")
        meta = SessionMeta(session_id=session_id, kind=str(kind), owner_id=owner, created_ms=int(created_at or 0))
        self._accessed(meta)
        return meta

    async def known(self, session_id: str) -> SessionMeta | None:
        """:meth:`meta`, remembered by this node; only for reads that find a deleted session gone.

        A session's kind and owner never change, so what was read once stays true for as long
        as the session exists; a session deleted since is found missing by the read that
        follows (its snapshot or log), which is why only such reads may use this. Many clients
        subscribing to one session (a stream's viewers, a pattern's players, reconnects after a
        restart) then cost one lookup per node instead of one each.
        """
        meta = self._known.get(session_id)
        if meta is None:
            meta = await self.meta(session_id)
            if meta is not None:
                if len(self._known) >= KNOWN_MEMORY:
                    self._known.clear()
                self._known[session_id] = meta
        else:
            self._accessed(meta)
        return meta

    def _accessed(self, meta: SessionMeta) -> None:
        if self._closing:
            return
        if not self._due(meta.session_id):
            self._trail(meta.session_id)
            return
        task = asyncio.create_task(self._record(meta.session_id, meta.kind, created_ms=meta.created_ms))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def used(self, session_id: str) -> None:
        """A use of the session through its API or events (a read, a change, a report): an
        access (seed 001), recorded in the background at most once per
        :data:`TOUCH_INTERVAL_MS` per session on this node, so a busy session costs no write
        per event. Nothing happens for an id that names no session."""
        if self._closing:
            return
        if not self._due(session_id):
            self._trail(session_id)
            return
        task = asyncio.create_task(self._record_use(session_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _trail(self, session_id: str) -> None:
        """One more touch of ``session_id`` once the interval since its last one has passed: the
        last change of a burst is measured. A stream's clips all came within its first minute,
        nobody opened it after, and its size stayed as its creation measured it, 28% low, for
        good (audit "operator": the sessions never touched again are the orphans, whose cost an
        operator weighs). At most one waits per session; the touch itself is a use as any other."""
        if session_id in self._trailing or len(self._trailing) >= TOUCH_MEMORY:
            return
        since = self._touched_ms.get(session_id)
        if since is None:
            return
        wait_ms = min(max(TOUCH_INTERVAL_MS - (self._clock.now_ms() - since), 0), TOUCH_INTERVAL_MS)
        self._trailing[session_id] = asyncio.get_running_loop().call_later(wait_ms / 1000, self._trailed, session_id)

    def _trailed(self, session_id: str) -> None:
        self._trailing.pop(session_id, None)
        self.used(session_id)  # due now (or touched meanwhile: then it waits once more)

    async def _record_use(self, session_id: str) -> int | None:
        try:
            found: Any = await self._redis.hmget(self._keys.session(session_id), "kind", "created_at")
        except REDIS_AWAY as exc:
            log.warning("recording a use of %s failed: %s", session_id, exc)
            return None
        kind, created_at = found
        if not kind:
            return None
        return await self._record(session_id, str(kind), created_ms=int(created_at or 0))

    async def index(
        self, *, session_id: str, owner_id: str, created_ms: int, kind: str = "", created_kind: str = ""
    ) -> None:
        """Add a new session to the global index, its owner's and (given its ``kind``) the admin ones.

        Without ``kind`` the admin indexes add the session at its first lookup (:meth:`touch`);
        ``created_kind`` then names the kind for :attr:`on_created` alone.
        """
        k = self._keys
        admin_keys = [*admin_set_keys(k, kind), k.admin_ops()]
        admin_args: list[str | int] = [session_id, kind, created_ms, month_field("writes", created_ms)]
        # A single Redis takes the admin step (its own script: its keys share {admin}) in the same
        # round trip as the other indexes; a cluster pipeline cannot carry scripts.
        together = bool(kind) and not isinstance(self._redis, RedisCluster)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(k.all_sessions(), {session_id: created_ms})
            if owner_id:
                pipe.zadd(k.user_recent(owner_id), {session_id: created_ms})
            if together:
                await self._admin_index(keys=admin_keys, args=admin_args, client=pipe)
            await pipe.execute()
        if kind and not together:
            await self._admin_index(keys=admin_keys, args=admin_args)
        self.on_created(kind or created_kind)
        if owner_id:
            await self.owned_by(owner_id)

    async def owned_by(self, user_id: str) -> None:
        """Tell :attr:`on_owned` that ``user_id`` owns something now. The thing is stored: a
        failure here is logged, never answered (the next refresh of a device keeps them too)."""
        try:
            await self.on_owned(user_id)
        except REDIS_AWAY as exc:  # Redis away or refusing writes (a full disk): said in one line
            log.warning("could not keep the identity of %s, who owns something now: %s", user_id, exc)
        except Exception:
            log.exception("could not keep the identity of %s, who owns something now", user_id)

    async def unindex(self, *, session_id: str, owner_id: str) -> None:
        """Drop a deleted session from the indexes (the admin ones included)."""
        await self.settle()  # a touch still running must not re-add what this removes
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self._keys.all_sessions(), session_id)
            if owner_id:
                pipe.zrem(self._keys.user_recent(owner_id), session_id)
            await pipe.execute()
        self._touched_ms.pop(session_id, None)
        self._known.pop(session_id, None)
        trailing = self._trailing.pop(session_id, None)
        if trailing is not None:
            trailing.cancel()
        found: Any = await self._redis.hget(self._keys.admin_kind_of(), session_id)
        if found is None:
            return
        kind = str(found)
        await self._admin_remove(keys=admin_remove_keys(self._keys, kind), args=[session_id, kind])

    @property
    def orphan_ms(self) -> int:
        """Not accessed for this long: an orphan (``SESSIONHUB_ADMIN_ORPHAN_DAYS``)."""
        return self.orphan_days * DAY_MS

    async def close(self) -> None:
        """Start no more background touches, make the trailing ones now, and wait for those
        running (before Redis closes).

        A trailing touch is the last measure of a burst (:meth:`_trail`): cancelled by a restart
        within its minute, the sessions nobody opened again kept their size low for good, in the
        cards, the sorts, the alerts and /metrics (audit "adminphone"). Made now, within
        :data:`CLOSE_TOUCHES_S` (a stop is not held longer)."""
        self._closing = True
        trailing = list(self._trailing)
        for handle in self._trailing.values():
            handle.cancel()
        self._trailing.clear()
        if trailing:
            made = asyncio.gather(*(self._record_use(session_id) for session_id in trailing), return_exceptions=True)
            try:
                await asyncio.wait_for(made, CLOSE_TOUCHES_S)
            except TimeoutError:
                log.warning("%d sessions' last sizes were not measured before the stop", len(trailing))
        await self.settle()

    async def settle(self) -> None:
        """Wait for the touches this node has started (a reader that must see them calls this)."""
        while True:
            # A finished touch leaves the set by its done callback, which runs a loop turn later;
            # and a gather of finished tasks returns without yielding that turn (Python 3.12+
            # completes it eagerly). Waiting for the set to empty itself spun forever, holding
            # the loop at shutdown (seen on 3.13). So the finished ones are dropped here.
            self._pending.difference_update([task for task in self._pending if task.done()])
            if not self._pending:
                return
            await asyncio.gather(*self._pending, return_exceptions=True)

    def _due(self, session_id: str) -> bool:
        """Whether the session's touch is due on this node; if so, it counts as done from now."""
        now_ms = self._clock.now_ms()
        if now_ms - self._touched_ms.get(session_id, -TOUCH_INTERVAL_MS) < TOUCH_INTERVAL_MS:
            return False
        if len(self._touched_ms) >= TOUCH_MEMORY:
            self._touched_ms.clear()
        self._touched_ms[session_id] = now_ms
        return True

    async def touch(self, session_id: str, kind: str, *, created_ms: int, force: bool = False) -> None:
        """Record an access now, with the session's last event time and stored size.

        At most once per :data:`TOUCH_INTERVAL_MS` per session on this node unless ``force``.
        """
        if self._due(session_id) or force:
            await self._record(session_id, kind, created_ms=created_ms)

    async def access(self, session_id: str) -> Access | None:
        """Mark a session accessed now, for a page that loads it; None when there is no such session.

        Says whether it was an orphan *before* this access (the access revives it), so the page
        can show its banner. A session page calls this before it subscribes: a subscription's
        lookup is an access too, and would hide the orphan from the page that revived it.
        """
        found: Any = await self._redis.hmget(self._keys.session(session_id), "kind", "created_at")
        kind, created_at = found
        if not kind:
            return None
        self._due(session_id)  # counts as this node's touch: the subscription right after adds none
        previous_ms = await self._record(session_id, str(kind), created_ms=int(created_at or 0))
        if previous_ms is None:  # bookkeeping failed: no banner rather than an error
            return Access(previous_ms=0, orphaned=False, orphan_days=self.orphan_days)
        orphaned = self._clock.now_ms() - previous_ms >= self.orphan_ms
        return Access(previous_ms=previous_ms, orphaned=orphaned, orphan_days=self.orphan_days)

    async def _record(self, session_id: str, kind: str, *, created_ms: int, companion: bool = True) -> int | None:
        """Touch the admin indexes; the access time before this one, or None when nothing was recorded.

        A session that is a part of another (a stream and its audience, :data:`COMPANIONS`) is
        touched with it: used alone, the audience of a stream its owner kept using became an
        orphan, and deleting orphans took it from under the stream's viewers ("Stream deleted");
        a stream its viewers kept watching, an orphan, was deleted with them watching (audit
        "operator")."""
        previous = await self._record_one(session_id, kind, created_ms=created_ms)
        field = COMPANIONS.get(kind)
        if companion and field is not None and previous is not None:
            try:
                other: Any = await self._redis.hget(self._keys.session(session_id), field)
                found: Any = [None, None]
                if other:
                    found = await self._redis.hmget(self._keys.session(str(other)), "kind", "created_at")
            except REDIS_AWAY as exc:
                log.warning("admin touch of the companion of %s failed: %s", session_id, exc)
                return previous
            if found[0]:
                await self._record_one(str(other), str(found[0]), created_ms=int(found[1] or 0))
        return previous

    async def _record_one(self, session_id: str, kind: str, *, created_ms: int) -> int | None:
        # A failure is logged, never raised: bookkeeping must not refuse the lookup it follows.
        now_ms = self._clock.now_ms()
        try:
            found = await self.measure(session_id, kind)
            if found.size == 0:
                return None  # the record is gone (deleted meanwhile): never index it again
            k = self._keys
            # In the session's own record too, for the orphan deletion's atomic re-check.
            await self._accessed_script(keys=[k.session(session_id)], args=[now_ms])
            recorded, previous = await self._admin_touch(
                keys=admin_touch_keys(k, kind),
                args=[
                    session_id,
                    kind,
                    now_ms,
                    found.updated_ms or "",
                    found.size,
                    month_field("reads", now_ms),
                    created_ms,
                    found.files,
                ],
            )
        except REDIS_AWAY as exc:
            log.warning("admin touch of %s failed: %s", session_id, exc)
            return None
        return int(float(previous)) if recorded else None

    async def record_size(self, session_id: str, kind: str) -> None:
        """Put a just-written record's size in the admin indexes (indexed at 0 before it existed).

        Without this a session nobody opens again (a pattern never edited) stays at 0 bytes in
        the storage totals and cost. Counts no access and no read; a failure is only logged.
        """
        try:
            found = await self.measure(session_id, kind)
            if found.size == 0:
                return
            await self._admin_touch(
                keys=admin_touch_keys(self._keys, kind),
                args=[session_id, kind, "", "", found.size, "", self._clock.now_ms(), found.files],
            )
        except REDIS_AWAY as exc:
            log.warning("admin size of %s failed: %s", session_id, exc)

    async def measure(self, session_id: str, kind: str = "") -> Measured:
        """The session's last event time, its size in Redis (its record, log and the ``kind``'s
        own keys: :attr:`owned_keys`) and its files' bytes outside Redis (:data:`FILES_FIELD`)."""
        k = self._keys
        stored = (k.session(session_id), k.log(session_id), k.log_meta(session_id))
        owned = self.owned_keys(kind, session_id) if kind else ()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(k.session(session_id), FILES_FIELD)
            pipe.xrevrange(k.log(session_id), count=1)
            for key in stored:
                pipe.memory_usage(key, samples=0)  # every element: a sample can miss the one big field
            for key in owned:
                # Sampled (Redis's default, 5 elements): a stream's clips or a voice session's
                # chunks may be thousands, and every element of each is a minute's touch too many.
                pipe.memory_usage(key)
            files, last, *sizes = await pipe.execute()
        if not sizes[0]:
            return Measured(updated_ms=_event_ms(last), size=0, files=0)
        return Measured(updated_ms=_event_ms(last), size=sum(int(size or 0) for size in sizes), files=_whole(files))

    async def recent(self, owner_id: str, *, limit: int) -> list[dict[str, str]]:
        """The user's sessions of every kind, newest first, as stored records."""
        ids: Any = await self._redis.zrevrange(self._keys.user_recent(owner_id), 0, limit - 1)
        async with self._redis.pipeline(transaction=False) as pipe:
            for session_id in ids:
                pipe.hgetall(self._keys.session(session_id))
            records: list[dict[str, str]] = await pipe.execute()
        return [record for record in records if record.get("kind")]


def _no_keys(kind: str, session_id: str) -> Sequence[str]:
    return ()


def _whole(value: Any) -> int:
    """A record's count field as a number: 0 when absent or not a whole number."""
    try:
        return max(int(value or 0), 0)
    except (TypeError, ValueError):
        return 0


def _event_ms(entries: list[Any]) -> int:
    """The ``ts`` of the last log entry XREVRANGE returned, or 0."""
    if not entries:
        return 0
    try:
        return int(json.loads(entries[0][1]["e"])["ts"])
    except (ValueError, KeyError, TypeError, IndexError):
        return 0
