"""Listening histories (seed 003): play/pause reports become honest time ranges, per user.

Each user has one history session (kind ``listening``, a UUID v4 remembered per user); all it
holds shares that session's hash tag, and every change is one script that checks, changes and
appends the event to the history's log (see ``lua/listening/_history.lua`` for the keys).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from protocol import events as etypes
from protocol.errors import CodedError, ErrorCode
from storage.due import DueSweep, LaterEntries
from storage.events import Position
from storage.listening.model import (
    KIND,
    META_FIELDS,
    HistorySnapshot,
    ListeningRules,
    ListeningSession,
    Outcome,
    Report,
    Upload,
)
from storage.scripts import Script, composed_script, plain_script
from storage.store import Store

# A sweep lease: how long a claimed history stays away from other nodes' sweeps.
SWEEP_LEASE_MS = 30_000
# How long a clear's answer is kept for a resend of its request id (as a voice press's).
REQUEST_TTL_MS = 24 * 3600 * 1000
# The answers of clears with a request id kept per history, at most (the newest): a resend of a
# press older than that clears again, which only a person clearing this often could meet.
CLEAR_REQUESTS_KEPT = 16
# The client ids of deleted uploads kept (a day) so that a resend does not bring one back, at most.
DELETED_UPLOADS_KEPT = 10_000


@dataclass(frozen=True, slots=True)
class Cleared:
    """What a clear answered: its event's offset, the sessions it removed, and whether it is a
    resend of a press answered before (then nothing was removed now)."""

    offset: int
    removed: int
    repeated: bool


def _history_script(redis: Redis, name: str) -> Script:
    """An event script with the listening keys bound (core prologue, then ``_history.lua``)."""
    return composed_script(redis, "core/_event.lua", "listening/_history.lua", name)


def _meta_json(meta: dict[str, Any] | None) -> str:
    if not meta:
        return ""
    kept = {name: meta[name] for name in META_FIELDS if meta.get(name) is not None}
    return json.dumps(kept, separators=(",", ":"), sort_keys=True) if kept else ""


def _position_arg(position_s: float | None) -> str:
    return "" if position_s is None else repr(float(position_s))


class ListeningHistories:
    """Repository of users' listening histories."""

    def __init__(self, store: Store, *, rules: ListeningRules) -> None:
        redis = self._redis = store.redis
        self._keys = store.keys
        self._log = store.log
        self._clock = store.clock
        self._sessions = store.sessions
        self.rules = rules
        self._create = _history_script(redis, "listening/history_create.lua")
        self._report = _history_script(redis, "listening/report.lua")
        self._upload = _history_script(redis, "listening/upload.lua")
        self._remove = _history_script(redis, "listening/remove.lua")
        self._clear = _history_script(redis, "listening/clear.lua")
        self._sweep = _history_script(redis, "listening/sweep.lua")
        self._snapshot = plain_script(redis, "listening/snapshot.lua")
        self._due = DueSweep(redis, claim_ms=SWEEP_LEASE_MS)
        self._due_later = LaterEntries(redis)  # entries whose shard was away: the next sweep's
        self._pointer_clear = plain_script(redis, "core/pointer_clear.lua")

    # --- the history session --------------------------------------------------------------
    async def find(self, user_id: str) -> str | None:
        """The user's history id, or None before their first use."""
        value = await self._redis.get(self._keys.listening_history(user_id))
        return str(value) if value else None

    async def ensure(self, user_id: str) -> str:
        """The user's history id, created (indexed, then recorded) on first use."""
        key = self._keys.listening_history(user_id)
        history_id = await self.find(user_id)
        if history_id is None:
            candidate = str(uuid.uuid4())
            if await self._redis.set(key, candidate, nx=True):
                await self._sessions.index(
                    session_id=candidate, owner_id=user_id, created_ms=self._clock.now_ms(), created_kind=KIND
                )
            history_id = await self.find(user_id)
            assert history_id is not None  # set just now, by this call or a racing one
        # Idempotent: covers a racing first use whose record is not written yet.
        await self._create_record(history_id, user_id)
        return history_id

    async def _create_record(self, history_id: str, user_id: str) -> None:
        now = self._clock.now_ms()
        record = {"id": history_id, "kind": KIND, "owner_id": user_id, "created_at": str(now)}
        public = {"session_id": history_id, "owner_id": user_id, "created_at": now, "total_ms": 0, "count": 0}
        await self._log.run(
            self._create,
            history_id,
            keys=[self._keys.session(history_id)],
            args=[etypes.SESSION_UPDATE, json.dumps(public), *[v for pair in record.items() for v in pair]],
            now_ms=now,
        )

    def owned_keys(self, history_id: str) -> list[str]:
        """The history's keys besides its record and log (deleted with it by an operator)."""
        k = self._keys
        return [
            *self._history_keys(history_id)[1:],
            k.listening_cleared_clients(history_id),
            k.listening_clear_requests(history_id),
            k.listening_pauses(history_id),
        ]

    async def forget(self, history_id: str, *, owner_id: str) -> None:
        """After an operator deleted the history: the owner's pointer (if still this one) and the sweep queue.

        The owner's next use starts a new, empty history.
        """
        if owner_id:
            await self._pointer_clear(keys=[self._keys.listening_history(owner_id)], args=[history_id])
        await self._redis.zrem(self._keys.listening_due(), history_id)

    def _history_keys(self, history_id: str) -> list[str]:
        k = self._keys
        return [
            k.session(history_id),
            k.listening_records(history_id),
            k.listening_by_start(history_id),
            k.listening_by_item(history_id),
            k.listening_items(history_id),
            k.listening_meta(history_id),
            k.listening_open(history_id),
            k.listening_last(history_id),
            k.listening_stats(history_id),
            k.listening_clients(history_id),
        ]

    async def _run(
        self, script: Script, history_id: str, user_id: str, args: list[Any], *, more_keys: tuple[str, ...] = ()
    ) -> list[Any]:
        return await self._log.run(
            script,
            history_id,
            keys=[*self._history_keys(history_id), *more_keys],
            args=[user_id, etypes.LISTENING_SESSION, etypes.LISTENING_REMOVED, *args],
            explain=_explained,
        )

    # --- changes ----------------------------------------------------------------------------
    async def report(self, history_id: str, user_id: str, report: Report, *, may_add: bool = True) -> Outcome:
        """Apply a status report (the rules are in ``report.lua``).

        ``may_add=False``: a report that would start a new session is refused ``limit_reached``
        with nothing changed (the history may hold no more sessions than it has), while one that
        extends, resumes or finalizes goes through: how a caller asks "is this a new session?"
        before counting it (handlers/listening/actions.py, the guests' day cap)."""
        rules = self.rules
        result = await self._run(
            self._report,
            history_id,
            user_id,
            [
                report.device_id,
                report.item_id,
                report.status,
                _position_arg(report.position_s),
                str(uuid.uuid4()),
                _meta_json(report.meta),
                rules.window_ms,
                rules.throttle_ms,
                rules.min_ms,
                rules.max_devices,
                rules.max_items,
                rules.max_sessions if may_add else 0,
                report.ago_ms,
                report.pause_id,
                report.continues,
            ],
            more_keys=(self._keys.listening_pauses(history_id),),
        )
        outcome = _outcome(result)
        if outcome.action in ("started", "resumed"):
            # Plain ZADD (not LT): a sweep holding this entry under lease must see it changed
            # and keep it (see due_settle.lua).
            # The set's shard away (a failover on Redis Cluster), the play is answered all the
            # same and its entry written by this node's next sweep (storage.due.LaterEntries).
            due = self._clock.now_ms() + rules.silence_ms
            await self._due_later.add(self._keys.listening_due(), history_id, due)
        return outcome

    async def upload(
        self, history_id: str, user_id: str, upload: Upload, *, may_add: bool = True, refused: str = ""
    ) -> Outcome:
        """Store an offline player's finished session once per ``client_id``; ``may_add`` as
        in :meth:`report` (a repeat, or a session under the minimum, is answered either way).
        ``refused``: why the caller refuses its times, ``invalid_payload`` with those words
        unless it repeats a stored ``client_id`` (answered as the repeat it is)."""
        result = await self._run(
            self._upload,
            history_id,
            user_id,
            [
                upload.device_id,
                upload.item_id,
                upload.started_at,
                upload.ended_at,
                upload.client_id,
                str(uuid.uuid4()),
                _meta_json(upload.meta),
                self.rules.max_items,
                self.rules.max_sessions if may_add else 0,
                self.rules.min_ms,
                refused,
            ],
            more_keys=(self._keys.listening_cleared_clients(history_id),),
        )
        return _outcome(result)

    async def remove(self, history_id: str, user_id: str, session_id: str) -> int:
        """Delete one listening session; returns the event offset."""
        result = await self._run(
            self._remove,
            history_id,
            user_id,
            [session_id, REQUEST_TTL_MS, DELETED_UPLOADS_KEPT],
            more_keys=(self._keys.listening_cleared_clients(history_id),),
        )
        return int(result[0])

    async def clear(self, history_id: str, user_id: str, request_id: str = "") -> Cleared:
        """Delete the whole history, once per client-chosen ``request_id`` (a resend of that
        press is answered as it was and deletes nothing more; '' for none: every call clears)."""
        result = await self._run(
            self._clear,
            history_id,
            user_id,
            [etypes.LISTENING_CLEARED, request_id, REQUEST_TTL_MS, CLEAR_REQUESTS_KEPT],
            more_keys=(
                self._keys.listening_clear_requests(history_id),
                self._keys.listening_cleared_clients(history_id),
                # Without a request id the key is not read; it still names a key of the slot.
                self._keys.listening_clear_request_before(history_id, request_id or "-"),
            ),
        )
        return Cleared(offset=int(result[0]), removed=int(result[1]), repeated=bool(result[2]))

    # --- the silence sweep ------------------------------------------------------------------
    async def sweep_due(self, *, limit: int = 100) -> tuple[int, int]:
        """Finalize silent sessions of the histories due now: (histories claimed, sessions closed).

        Each history is claimed under a lease first, so nodes sweeping at once never both
        sweep one history (storage/due.py).
        """

        async def look(history_id: str) -> tuple[int, int | None]:
            result = await self._run(self._sweep, history_id, "", [self.rules.silence_ms, self.rules.min_ms])
            return int(result[0]), int(result[1]) if result[1] else None

        if self._due_later:
            await self._due_later.write()
        return await self._due.sweep(self._keys.listening_due(), self._clock.now_ms(), limit, look)

    # --- reads ------------------------------------------------------------------------------
    async def snapshot(self, history_id: str) -> tuple[HistorySnapshot | None, Position]:
        """The history record, totals and open sessions, with the log position they reflect."""
        k = self._keys
        record_pairs, stats_pairs, open_raw, epoch, offset, last_id = await self._snapshot(
            keys=[
                k.session(history_id),
                k.listening_stats(history_id),
                k.listening_open(history_id),
                k.listening_records(history_id),
                k.log_meta(history_id),
            ]
        )
        position = Position.from_meta([epoch, offset, last_id])
        record = dict(zip(record_pairs[::2], record_pairs[1::2], strict=True))
        if record.get("kind") != KIND:
            return None, position
        stats = dict(zip(stats_pairs[::2], stats_pairs[1::2], strict=True))
        return (
            HistorySnapshot(
                record=record,
                total_ms=int(stats.get("total_ms") or 0),
                count=int(stats.get("count") or 0),
                open=[ListeningSession.from_json(raw) for raw in open_raw],
            ),
            position,
        )

    async def totals(self, history_id: str) -> tuple[int, int]:
        """(total ms, session count) of the whole history."""
        total, count = await self._redis.hmget(self._keys.listening_stats(history_id), "total_ms", "count")
        return int(total or 0), int(count or 0)

    async def item_totals(self, history_id: str, *, limit: int) -> list[tuple[str, int]]:
        """Items by total listened time, most first."""
        pairs: Any = await self._redis.zrevrange(self._keys.listening_items(history_id), 0, limit - 1, withscores=True)
        return [(str(item), int(score)) for item, score in pairs if score > 0]

    async def metadata(self, history_id: str, item_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Stored metadata of ``item_ids`` (items without any are left out)."""
        unique = list(dict.fromkeys(item_ids))
        if not unique:
            return {}
        values: Any = await self._redis.hmget(self._keys.listening_meta(history_id), unique)
        return {item: json.loads(raw) for item, raw in zip(unique, values, strict=True) if raw}

    async def get_many(self, history_id: str, ids: list[str]) -> list[ListeningSession]:
        """The records of ``ids``, in that order (ids deleted meanwhile are skipped)."""
        if not ids:
            return []
        raws: Any = await self._redis.hmget(self._keys.listening_records(history_id), ids)
        return [ListeningSession.from_json(raw) for raw in raws if raw]

    async def page(
        self, history_id: str, *, limit: int, cursor: tuple[int, str] | None, from_ms: int, to_ms: int
    ) -> tuple[list[ListeningSession], tuple[int, str] | None]:
        """Sessions started in ``[from_ms, to_ms)``, newest first, after ``cursor`` (started_at, id)."""
        key = self._keys.listening_by_start(history_id)
        top = to_ms - 1
        skip_ties = 0
        if cursor is not None:
            top = min(top, cursor[0])
            if cursor[0] <= top:
                skip_ties = int(await self._redis.zcount(key, cursor[0], cursor[0]))
        pairs: Any = await self._redis.zrevrangebyscore(
            key, top, from_ms, start=0, num=limit + 1 + skip_ties, withscores=True
        )
        if cursor is not None:
            # Equal starts come in descending id order; those down to the cursor were shown.
            pairs = [(m, s) for m, s in pairs if not (int(s) == cursor[0] and m >= cursor[1])]
        chosen = pairs[: limit + 1]
        records = await self.get_many(history_id, [m for m, _ in chosen[:limit]])
        more = len(chosen) > limit and records
        return records, ((records[-1].started_at, records[-1].id) if more else None)

    async def page_for_item(
        self, history_id: str, item_id: str, *, limit: int, cursor: tuple[int, str] | None, from_ms: int, to_ms: int
    ) -> tuple[list[ListeningSession], tuple[int, str] | None]:
        """Like :meth:`page`, for one item, through the item index (a lex range per item)."""
        key = self._keys.listening_by_item(history_id)
        low = "[" + _item_member(item_id, max(from_ms, 0), "")
        high = "(" + _item_member(item_id, max(to_ms, 0), "")
        if cursor is not None:
            high = min(high, "(" + _item_member(item_id, cursor[0], cursor[1]), key=lambda s: s[1:])
        members: Any = await self._redis.zrevrangebylex(key, high, low, start=0, num=limit + 1)
        ids = [str(m).rsplit("\0", 1)[1] for m in members]
        records = await self.get_many(history_id, ids[:limit])
        more = len(ids) > limit and records
        return records, ((records[-1].started_at, records[-1].id) if more else None)

    async def overlapping(
        self, history_id: str, from_ms: int, to_ms: int, *, page_size: int, cap: int
    ) -> AsyncIterator[list[ListeningSession]]:
        """Sessions overlapping ``[from_ms, to_ms)``, newest first, in pages, read through the
        start index only (at most ``cap`` read).

        A session overlapping the range starts before ``to_ms`` and at most the longest span
        ever recorded before ``from_ms``.
        """
        max_span = await self._redis.hget(self._keys.listening_stats(history_id), "max_span_ms")
        low = from_ms - int(max_span or 0)
        async for page in self.newest_first(history_id, from_ms=low, to_ms=to_ms, page_size=page_size, cap=cap):
            yield [s for s in page if s.ended_at > from_ms or s.open]

    async def newest_first(
        self, history_id: str, *, from_ms: int, to_ms: int, page_size: int, cap: int
    ) -> AsyncIterator[list[ListeningSession]]:
        """Sessions started in ``[from_ms, to_ms)``, newest first, one page of at most ``page_size``
        at a time, at most ``cap`` in all.

        Each page is read after the caller consumed the last, through the same cursor as
        :meth:`page`, so a session written meanwhile shifts nothing already read.
        """
        cursor: tuple[int, str] | None = None
        left = cap
        while left > 0:
            records, cursor = await self.page(
                history_id, limit=min(page_size, left), cursor=cursor, from_ms=from_ms, to_ms=to_ms
            )
            if records:
                yield records
            left -= len(records)
            if cursor is None:
                return


def _item_member(item_id: str, started_at: int, session_id: str) -> str:
    """A ``by_item`` member (``_history.lua`` builds the same); a prefix when the id is empty."""
    return f"{item_id}\0{started_at:015d}\0{session_id}"


# What each cap of a history holds, for a refusal's words (the scripts name the cap and its limit).
_CAPS = {
    "devices": "devices playing at once",
    "items": "different items",
    "sessions": "listening sessions",
}


def _explained(code: ErrorCode, detail: str) -> CodedError | None:
    """A refusal ``{false, 'limit_reached', '<cap>:<limit>'}`` in words, naming the cap; an
    upload's times refused by its caller (``{false, 'invalid_payload', <why>}``) in its words."""
    if code is ErrorCode.INVALID_PAYLOAD and detail:
        return CodedError(code, detail)
    cap, _, limit = detail.partition(":")
    if code is not ErrorCode.LIMIT_REACHED or cap not in _CAPS or not limit.isdigit():
        return None
    return CodedError(code, f"this history holds its maximum of {limit} {_CAPS[cap]}", cap=cap, limit=int(limit))


def _outcome(result: list[Any]) -> Outcome:
    raw = str(result[2] or "")
    session = ListeningSession.from_json(raw) if raw else None
    meta = json.loads(result[3]) if len(result) > 3 and result[3] else None
    return Outcome(offset=int(result[0]), action=str(result[1]), session=session, meta=meta)
