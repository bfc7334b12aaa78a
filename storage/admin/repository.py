"""The admin repository: metrics from the admin counters, session listings, detail, deletion
and the audit log.

Counters and indexes are kept by ``storage/sessions.py`` (``index``/``unindex``/``touch``, each
a step of its own right after the session's script); everything here reads them and never
scans every key. :mod:`storage.admin.recalc` rebuilds them from the data.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from protocol.errors import CodedError, ErrorCode
from protocol.events import SESSION_DELETED
from storage.clock import Clock
from storage.events import EventLog
from storage.keys import Keys
from storage.scripts import event_script
from storage.sessions import SessionDirectory, month_field
from storage.streams.audience import AUDIENCE_KIND

DAY_MS = 86_400_000
ACTIVE_MS = DAY_MS  # "active": accessed in the last 24 hours
AUDIT_MAXLEN = 10_000
DELETED_LOG_RETENTION_MS = DAY_MS
# Entries a listing request looks at before it answers with what it found and a cursor.
SCAN_BUDGET = 2_000
SCAN_BATCH = 200
GB = 1024**3


# Kinds whose sessions are not in their owner's own list (storage/streams/audience.py indexes an
# audience with no owner): an owner filter of such a kind walks the kind's index instead.
UNLISTED_KINDS = frozenset({AUDIENCE_KIND})


@dataclass(frozen=True, slots=True)
class CostRates:
    """What storage and operations cost, for the monthly estimate."""

    storage_per_gb_month: float
    reads_per_million: float
    writes_per_million: float


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A validated listing request (see ``handlers/admin/requests.py``)."""

    sort: str = "created"
    order: str = "desc"
    kind: str = ""
    state: str = ""  # "", "active" or "orphaned"
    created_from_ms: int | None = None
    created_to_ms: int | None = None
    owner: str = ""
    limit: int = 50
    cursor: str = ""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a listing stopped: the score reached and how many entries of that score it passed."""

    score: float
    ties: int

    def encode(self) -> str:
        return f"{self.score!r}:{self.ties}"

    @classmethod
    def decode(cls, raw: str) -> Cursor | None:
        if not raw:
            return None
        score, sep, ties = raw.partition(":")
        try:
            parsed = cls(score=float(score), ties=int(ties))
        except ValueError:
            parsed = None
        if not sep or parsed is None or parsed.ties < 0 or parsed.score != parsed.score:
            raise CodedError(ErrorCode.INVALID_PAYLOAD, "cursor is not one this server handed out")
        return parsed


def day_start_ms(now_ms: int) -> int:
    """Midnight UTC of ``now_ms``'s day."""
    return now_ms - now_ms % DAY_MS


async def write_audit(
    redis: Redis, keys: Keys, clock: Clock, *, actor: str, action: str, target: str, detail: dict[str, Any]
) -> None:
    """Append an entry to the admin audit log (also what ``sessionhub admin grant`` writes)."""
    await redis.xadd(
        keys.admin_audit(),
        {
            "ts": str(clock.now_ms()),
            "actor": actor,
            "action": action,
            "target": target,
            "detail": json.dumps(detail, separators=(",", ":")),
        },
        maxlen=AUDIT_MAXLEN,
        approximate=True,
    )


class AdminStore:
    """Reads the admin indexes; deletes sessions for an operator; keeps the audit log."""

    def __init__(
        self, *, redis: Redis, keys: Keys, log: EventLog, clock: Clock, sessions: SessionDirectory, orphan_days: int
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._log = log
        self._clock = clock
        self._sessions = sessions
        self.orphan_days = orphan_days
        self._delete = event_script(redis, "core/session_delete.lua")

    @property
    def orphan_ms(self) -> int:
        return self.orphan_days * DAY_MS

    # --- metrics ----------------------------------------------------------------------
    async def counts(self, kinds: list[str]) -> dict[str, dict[str, int]]:
        """Per kind (and ``*`` for all): sessions, active, created today, orphaned, bytes."""
        await self._sessions.settle()  # this node's pending touches first
        now = self._clock.now_ms()
        k = self._keys
        # The byte totals first: a kind no longer registered that still holds bytes is listed too.
        # One command each, not a pipeline: read as a pipeline, a pattern save on a healthy shard
        # right after a /metrics scrape was refused 503 while another shard had no master
        # (tests/test_cluster_master_down.py); read as commands, as before, it was not.
        byte_totals: dict[str, str] = await self._redis.hgetall(k.admin_bytes())  # type: ignore[assignment]
        file_totals: dict[str, str] = await self._redis.hgetall(k.admin_file_bytes())  # type: ignore[assignment]
        known: list[str] = list(kinds)
        for extra in [*byte_totals, *file_totals]:
            if extra not in known:
                known.append(str(extra))
        scopes = [*known, "*"]
        async with self._redis.pipeline(transaction=False) as pipe:
            for scope in scopes:
                pipe.zcard(k.admin_created(scope))
                pipe.zcount(k.admin_accessed(scope), now - ACTIVE_MS, "+inf")
                pipe.zcount(k.admin_created(scope), day_start_ms(now), "+inf")
                pipe.zcount(k.admin_accessed(scope), "-inf", f"({now - self.orphan_ms}")
            values = await pipe.execute()

        def total(totals: dict[str, str], scope: str) -> int:
            return sum(int(v) for v in totals.values()) if scope == "*" else int(totals.get(scope) or 0)

        result: dict[str, dict[str, int]] = {}
        for i, scope in enumerate(scopes):
            sessions, active, today, orphaned = (int(v) for v in values[i * 4 : i * 4 + 4])
            stored = total(byte_totals, scope)
            result[scope] = {
                "sessions": sessions,
                "active": active,
                "created_today": today,
                "orphaned": orphaned,
                "storage_bytes": stored,
                "average_bytes": stored // sessions if sessions else 0,
                "file_bytes": total(file_totals, scope),
            }
        return result

    async def remix_depth(self) -> dict[str, int | None]:
        """The deepest remix chain as of the last recalculation (``as_of`` None: never computed)."""
        depth, as_of = await self._redis.hmget(self._keys.admin_stats(), "deepest_remix", "deepest_remix_at")
        return {"depth": int(depth or 0), "as_of": int(as_of) if as_of else None}

    async def operations(self) -> dict[str, int]:
        """Reads and writes counted this month (the cost estimate's basis)."""
        now = self._clock.now_ms()
        reads, writes = await self._redis.hmget(
            self._keys.admin_ops(), month_field("reads", now), month_field("writes", now)
        )
        return {"reads": int(reads or 0), "writes": int(writes or 0)}

    @staticmethod
    def monthly_cost(
        storage_bytes: int, ops: dict[str, int], rates: CostRates, *, month_fraction: float
    ) -> dict[str, float]:
        """Estimated monthly cost; operations so far are projected over the whole month."""
        projection = 1 / month_fraction if month_fraction > 0 else 1.0
        storage = storage_bytes / GB * rates.storage_per_gb_month
        reads = ops.get("reads", 0) * projection / 1e6 * rates.reads_per_million
        writes = ops.get("writes", 0) * projection / 1e6 * rates.writes_per_million
        return {
            "storage": round(storage, 6),
            "reads": round(reads, 6),
            "writes": round(writes, 6),
            "total": round(storage + reads + writes, 6),
        }

    def month_fraction(self) -> float:
        """How much of the current (UTC) month has passed, in (0, 1]."""
        now = datetime.datetime.fromtimestamp(self._clock.now_ms() / 1000, tz=datetime.UTC)
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        following = (start + datetime.timedelta(days=32)).replace(day=1)
        return max((now - start) / (following - start), 1e-6)

    async def largest(self, *, min_bytes: int, limit: int) -> list[tuple[str, int]]:
        """Sessions stored in at least ``min_bytes``, largest first."""
        found: Any = await self._redis.zrange(
            self._keys.admin_size(), "+inf", min_bytes, desc=True, byscore=True, offset=0, num=limit, withscores=True
        )
        return [(str(sid), int(score)) for sid, score in found]

    async def count_larger(self, min_bytes: int) -> int:
        """How many sessions are stored in at least ``min_bytes``."""
        await self._sessions.settle()  # this node's pending touches first
        return int(await self._redis.zcount(self._keys.admin_size(), min_bytes, "+inf"))

    async def created_between(self, start_ms: int, end_ms: int) -> int:
        """Sessions created in ``[start_ms, end_ms)``."""
        return int(await self._redis.zcount(self._keys.admin_created("*"), start_ms, f"({end_ms}"))

    async def first_created_ms(self) -> int | None:
        """When the oldest session still stored was created (ms); None when there is none."""
        found = await self._redis.zrange(self._keys.admin_created("*"), 0, 0, withscores=True)
        return int(found[0][1]) if found else None

    # --- listing ----------------------------------------------------------------------
    def _base(self, query: ListQuery) -> tuple[str, float, float]:
        """The sorted set a listing walks, and the score bounds the filters allow on it."""
        k = self._keys
        now = self._clock.now_ms()
        low, high = float("-inf"), float("inf")
        if query.sort == "created":
            # The owner's own list leaves out what is a part of another session (a stream's
            # audience): those are found among their kind, by the owner filter of each row.
            by_owner = bool(query.owner) and query.kind not in UNLISTED_KINDS
            key = k.user_recent(query.owner) if by_owner else k.admin_created(query.kind or "*")
            if query.created_from_ms is not None:
                low = query.created_from_ms
            if query.created_to_ms is not None:
                high = query.created_to_ms
        elif query.sort == "accessed":
            key = k.admin_accessed(query.kind or "*")
            if query.state == "active":
                low = now - ACTIVE_MS
            elif query.state == "orphaned":
                high = now - self.orphan_ms - 1
        elif query.sort == "updated":
            key = k.admin_updated()
        elif query.sort == "remixes":
            key = k.admin_remixes()
        elif query.sort == "files":
            key = k.admin_files()  # only the sessions that keep files (a voice session's audio)
        else:
            key = k.admin_size()
        return key, low, high

    async def page(self, query: ListQuery) -> tuple[list[dict[str, Any]], str | None, int]:
        """One page of sessions: their rows, the next cursor (None at the end), entries scanned."""
        await self._sessions.settle()  # this node's pending touches first
        key, low, high = self._base(query)
        desc = query.order == "desc"
        cursor = Cursor.decode(query.cursor)
        bound: float = cursor.score if cursor else (high if desc else low)
        ties = cursor.ties if cursor else 0
        rows: list[dict[str, Any]] = []
        scanned = 0
        while len(rows) < query.limit and scanned < SCAN_BUDGET:
            start, end = (bound, low) if desc else (bound, high)
            batch: Any = await self._redis.zrange(
                key, _score(start), _score(end), desc=desc, byscore=True, offset=ties, num=SCAN_BATCH, withscores=True
            )
            if not batch:
                return rows, None, scanned
            described = await self.describe([str(sid) for sid, _ in batch])
            for (_, score), row in zip(batch, described, strict=True):
                scanned += 1
                ties = ties + 1 if score == bound else 1
                bound = float(score)
                if row is not None and self._matches(row, query):
                    rows.append(row)
                    if len(rows) == query.limit:
                        break
            if len(batch) < SCAN_BATCH and len(rows) < query.limit:
                return rows, None, scanned
        return rows, Cursor(score=bound, ties=ties).encode(), scanned

    def _matches(self, row: dict[str, Any], query: ListQuery) -> bool:
        now = self._clock.now_ms()
        if query.kind and row["kind"] != query.kind:
            return False
        if query.owner and row["owner_id"] != query.owner:
            return False
        # The owner's sessions are those of their own list, whatever the sort: a part of another
        # session (a stream's audience) only when its kind is asked for. They came and went with
        # the sort (in by size or access, out by creation: audit "operator").
        if query.owner and row["kind"] in UNLISTED_KINDS and query.kind not in UNLISTED_KINDS:
            return False
        if query.state == "active" and row["accessed_at"] < now - ACTIVE_MS:
            return False
        if query.state == "orphaned" and not row["orphaned"]:
            return False
        if query.created_from_ms is not None and row["created_at"] < query.created_from_ms:
            return False
        return not (query.created_to_ms is not None and row["created_at"] > query.created_to_ms)

    async def describe(self, session_ids: list[str]) -> list[dict[str, Any] | None]:
        """Listing rows for ``session_ids`` (None where the record is gone), in that order."""
        await self._sessions.settle()  # this node's pending touches first
        k = self._keys
        now = self._clock.now_ms()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zmscore(k.admin_accessed("*"), session_ids)
            pipe.zmscore(k.admin_updated(), session_ids)
            pipe.zmscore(k.admin_size(), session_ids)
            pipe.zmscore(k.admin_files(), session_ids)
            for session_id in session_ids:
                pipe.hgetall(k.session(session_id))
            accessed, updated, sizes, files, *records = await pipe.execute()
        rows: list[dict[str, Any] | None] = []
        for i, record in enumerate(records):
            if not record.get("kind"):
                rows.append(None)
                continue
            created = int(record.get("created_at") or 0)
            last_access = int(accessed[i] if accessed[i] is not None else created)
            rows.append(
                {
                    "session_id": session_ids[i],
                    "kind": record["kind"],
                    # A pattern's record names no owner (anyone with its link edits it), but its
                    # author's list holds it: the author is its owner here, as in that list.
                    "owner_id": record.get("owner_id") or record.get("author_id", ""),
                    "created_at": created,
                    "accessed_at": last_access,
                    "updated_at": int(updated[i] if updated[i] is not None else created),
                    "size_bytes": int(sizes[i] or 0),
                    "file_bytes": int(files[i] or 0),
                    "remix_count": int(record.get("remix_count") or 0),
                    "remixed_from": record.get("remixed_from") or None,
                    "active": last_access >= now - ACTIVE_MS,
                    "orphaned": last_access < now - self.orphan_ms,
                    "record": record,
                }
            )
        return rows

    # --- one session ------------------------------------------------------------------
    async def events(self, session_id: str, *, limit: int) -> list[dict[str, Any]]:
        """The session's last ``limit`` logged events, oldest first."""
        entries: Any = await self._redis.xrevrange(self._keys.log(session_id), count=limit)
        events: list[dict[str, Any]] = []
        for _, fields in reversed(entries):
            try:
                events.append(json.loads(fields["e"]))
            except (ValueError, KeyError, TypeError):
                events.append({"malformed": True})
        return events

    async def delete(
        self, session_id: str, *, extra_keys: list[str], actor: str, orphan_bound_ms: int | None = None
    ) -> int:
        """Delete a session of any kind (an event on its log first); returns that event's offset.

        With ``orphan_bound_ms`` only if it was not accessed since then (checked in the deleting
        step itself), else ``conflict``.
        """
        data = json.dumps({"id": session_id, "by": "admin", "actor": actor}, separators=(",", ":"))
        bound = "" if orphan_bound_ms is None else orphan_bound_ms
        result = await self._log.run(
            self._delete,
            session_id,
            keys=[self._keys.session(session_id), *extra_keys],
            args=[SESSION_DELETED, data, DELETED_LOG_RETENTION_MS, bound],
        )
        await self._sessions.unindex(session_id=session_id, owner_id=str(result[2]))
        return int(result[0])

    # --- audit ------------------------------------------------------------------------
    async def audit(self, *, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        """Record an admin action that changed data: who, what, when."""
        await write_audit(
            self._redis, self._keys, self._clock, actor=actor, action=action, target=target, detail=detail
        )

    async def audit_entries(self, *, limit: int) -> list[dict[str, Any]]:
        """The latest audit entries, newest first."""
        entries: Any = await self._redis.xrevrange(self._keys.admin_audit(), count=limit)
        return [
            {
                "id": entry_id,
                "ts": int(fields.get("ts") or 0),
                "actor": fields.get("actor", ""),
                "action": fields.get("action", ""),
                "target": fields.get("target", ""),
                "detail": json.loads(fields.get("detail") or "{}"),
            }
            for entry_id, fields in entries
        ]


def _score(value: float) -> str | float:
    """A score bound as ZRANGE BYSCORE takes it."""
    if value == float("inf"):
        return "+inf"
    if value == float("-inf"):
        return "-inf"
    return value
