"""Pattern sessions (seeds 001/004): the record, its state, lineage, live operations, presence.

A pattern session is the hash ``keys.session(id)`` of kind ``pattern`` with no owner (the UUID
v4 link is the capability). Its state is stored in the session hash split into fields a live op
touches one by one (see ``storage/patterns/layout.py``; creates and PUTs write that form), or
whole (one JSON document in the field ``state``) for patterns stored before the split; reads
assemble either. Every
change (an HTTP replacement, a live operation, a remix counted, a player joining) is one Lua
step that checks, changes and appends the event. The state arrives here already validated
(``handlers.patterns.state``); this module only stores and reads it.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from protocol import events as etypes
from protocol.errors import CodedError, ErrorCode
from storage.events import POSITION_FIELDS, Position
from storage.lean_redis import read_together
from storage.patterns import layout
from storage.ratelimit import CREATES_DAY_BUCKET, seconds_left, take_one
from storage.scripts import event_script, plain_script
from storage.store import Store

log = logging.getLogger(__name__)

KIND = "pattern"
# A deleted session's log stays this long, so subscribers and late recoveries see the deletion.
DELETED_LOG_RETENTION_MS = 24 * 3600 * 1000
# The window of the per-address daily cap on creations (UTC days, as every fixed window here),
# one cap shared with every other kind of session (storage.ratelimit.CREATES_DAY_BUCKET).
DAY_MS = 86_400_000
# How long the clients' last applied ops are remembered after a session's last op: a retry comes
# within seconds or minutes (a lost ack, a reconnect); the hash expires on its own.
OP_SEEN_TTL_MS = 3600 * 1000
# Clients remembered per session (~60 bytes each): far more than edit one pattern at once (its
# players are 10), and a bound on what a loop of new connections leaves.
OP_SEEN_MAX_CLIENTS = 1000


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _state_from(raw: str) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(raw) if raw else {}
    # Lua's cjson cannot tell an empty list from an empty object: a pattern whose last track
    # was deleted comes back as {"tracks": {}}.
    if state.get("tracks") == {}:
        state["tracks"] = []
    return state


@dataclass(frozen=True, slots=True)
class PatternRecord:
    """A pattern session as stored."""

    id: str
    name: str | None
    author_id: str
    created_at: int
    updated_at: int
    last_accessed_at: int
    remixed_from: str | None
    remixed_from_name: str | None
    remix_count: int
    immutable: bool
    source_id: str | None
    state: dict[str, Any]

    @classmethod
    def from_hash(cls, fields: dict[str, str]) -> PatternRecord:
        """Build from the stored hash (``decode_responses=True``)."""
        created = int(fields.get("created_at") or 0)
        return cls(
            id=fields["id"],
            name=fields.get("name") or None,
            author_id=fields.get("author_id", ""),
            created_at=created,
            updated_at=int(fields.get("updated_at") or created),
            last_accessed_at=int(fields.get("last_accessed_at") or created),
            remixed_from=fields.get("remixed_from") or None,
            remixed_from_name=fields.get("remixed_from_name") or None,
            remix_count=int(fields.get("remix_count") or 0),
            immutable=fields.get("immutable") == "1",
            source_id=fields.get("source_id") or None,
            state=layout.assemble(fields) if layout.is_split(fields) else _state_from(fields.get("state", "")),
        )


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a new session comes from: a remix of, or the published copy of, ``parent``, and the
    name it shows for the parent (cached: ``remixedFromName``)."""

    parent: PatternRecord
    parent_name: str | None
    immutable: bool = False


@dataclass(frozen=True, slots=True)
class Operation:
    """One live operation as the script applies it (see ``lua/patterns/op.lua``)."""

    kind: str
    track_id: str = ""
    target: str = ""
    value_json: str = ""


@dataclass(frozen=True, slots=True)
class Presence:
    """Outcome of a presence call: ``offset`` 0 when nothing was logged."""

    offset: int
    present: int


@dataclass(frozen=True, slots=True)
class OpSender:
    """Who sends a live op, and the limits it is applied under (see ``lua/op.lua``)."""

    client_id: str  # the client's own id, else its connection's: with seq, an op's identity
    player_id: str
    seq: int
    max_players: int
    max_state_bytes: int
    # The id nodes of before per-user client ids kept its ops by ('' when the same): a retry
    # across a rolling upgrade is still recognised (their entries expire within the hour).
    legacy_client_id: str = ""


@dataclass(frozen=True, slots=True)
class Applied:
    """Where an applied op's event is; ``duplicate``: a retry, answered without applying it."""

    position: Position
    duplicate: bool


class PatternSessions:
    """Repository of pattern sessions."""

    def __init__(self, store: Store) -> None:
        redis = self._redis = store.redis
        self._keys = store.keys
        self._scripts = store.scripts
        self._log = store.log
        self._clock = store.clock
        self._sessions = store.sessions
        self._touch = plain_script(redis, "patterns/touch.lua")
        self._replace = event_script(redis, "patterns/replace.lua")
        self._op = event_script(redis, "patterns/op.lua")
        self._delete = event_script(redis, "patterns/delete.lua")
        self._remix_count = event_script(redis, "patterns/remix_count.lua")
        self._child_add = plain_script(redis, "patterns/child_add.lua")
        self._presence = event_script(redis, "patterns/presence.lua")

    # --- records ---------------------------------------------------------------------------
    async def create(
        self,
        *,
        state: dict[str, Any],
        name: str | None,
        author_id: str,
        lineage: Lineage | None = None,
        record_id: str | None = None,
    ) -> PatternRecord:
        """Store a new session (a remix or published copy when ``lineage`` is given).

        ``record_id`` (else a fresh one) is a keyed request's derived id (handlers/idempotency.py):
        taken already by a pattern session, that one (made by a run of the request before) is
        returned as stored, else ``conflict``."""
        now = self._clock.now_ms()
        parent = lineage.parent if lineage else None
        record = PatternRecord(
            id=record_id or str(uuid.uuid4()),
            name=name,
            author_id=author_id,
            created_at=now,
            updated_at=now,
            last_accessed_at=now,
            remixed_from=parent.id if parent else None,
            remixed_from_name=lineage.parent_name if lineage else None,
            remix_count=0,
            immutable=bool(lineage and lineage.immutable),
            source_id=parent.id if parent and lineage and lineage.immutable else None,
            state=state,
        )
        # The indexes first (see storage/sessions.py); the author's list shows it on the landing page.
        await self._sessions.index(session_id=record.id, owner_id=author_id, created_ms=now, kind=KIND)
        try:
            await self._log.run(
                self._scripts.session_create,
                record.id,
                keys=[self._keys.session(record.id)],
                args=[etypes.PATTERN_CREATED, _compact({"id": record.id, "name": name}), *_fields(record)],
                now_ms=now,
            )
        except CodedError as exc:
            made = await self.load(record.id, touch=False) if record_id and exc.code is ErrorCode.CONFLICT else None
            if made is None:
                raise
            return made[0]
        await self._sessions.record_size(record.id, KIND)  # counted even if never opened again
        return record

    async def load(self, session_id: str, *, touch: bool) -> tuple[PatternRecord, Position] | None:
        """The record as it was before this load, and the position of its last change of state or
        name (its ETag); ``touch`` marks it accessed."""
        now = str(self._clock.now_ms()) if touch else ""
        keys = [self._keys.session(session_id), self._keys.log_meta(session_id)]
        found = await self._touch(keys=keys, args=[KIND, now])
        if not found:
            return None
        flat, epoch, offset = found
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        # The ETag names the last change of state or name, not the log's end (presence, cursors).
        state_offset = int(fields.get("state_offset") or offset)
        return PatternRecord.from_hash(fields), Position(epoch=str(epoch or ""), offset=state_offset)

    def owned_keys(self, session_id: str) -> list[str]:
        """The session's keys besides its record and log (deleted with it by an operator)."""
        return [
            self._keys.pattern_players(session_id),
            self._keys.remix_children(session_id),
            self._keys.pattern_ops_seen(session_id),
        ]

    async def exists(self, session_id: str) -> bool:
        """True while a pattern session with that id is stored."""
        return bool(await self._redis.hget(self._keys.session(session_id), "kind") == KIND)

    async def writable(self, session_id: str) -> bool | None:
        """None when no pattern session with that id is stored, else whether it may be changed
        (False: a published one)."""
        kind, immutable = await self._redis.hmget(self._keys.session(session_id), "kind", "immutable")
        return None if kind != KIND else immutable != "1"

    async def name_if_stored(self, session_id: str) -> tuple[bool, str | None]:
        """Whether a pattern session with that id is stored, and then its name (None: unnamed)."""
        kind, name = await self._redis.hmget(self._keys.session(session_id), "kind", "name")
        return (True, str(name) if name else None) if kind == KIND else (False, None)

    async def replace(
        self,
        session_id: str,
        *,
        state: dict[str, Any] | None,
        name: tuple[str | None] | None,
        expected: Position | None,
        event: dict[str, Any],
        now_ms: int,
        keep: tuple[str, ...] = (),
    ) -> Position:
        """Replace state and/or name (``name`` is a 1-tuple when set); ``expected`` is If-Match.

        ``keep`` names state fields that ``state`` lacks and the stored state's value of, when it
        has one, stays (read in the script's own step, so no live edit between is lost); the
        ``pattern_state`` event (``event`` plus ``"state"``) carries the merged state.
        """
        fields = _state_fields(state) if state is not None else []
        if state is not None and fields[:1] == ["state"]:
            keep = ()  # a state without a track list is stored whole: nothing is spliced into it
        head, tail = _event_parts(event, state)
        result = await self._log.run(
            self._replace,
            session_id,
            keys=[self._keys.session(session_id)],
            args=[
                KIND,
                expected.epoch if expected else "",
                expected.offset if expected else 0,
                "1" if state is not None else "0",
                "1" if name is not None else "0",
                (name[0] or "") if name is not None else "",
                etypes.PATTERN_STATE,
                head,
                tail,
                ",".join(keep),
                *fields,
            ],
            now_ms=now_ms,
        )
        return Position(epoch=str(result[1] or ""), offset=int(result[0]))

    async def delete(self, session_id: str, *, author_id: str) -> None:
        """Delete the session (``forbidden`` for a published one) and drop it from the indexes
        (``author_id``: from its record, which the caller has read).

        Its place among its parent's children (another slot) is the caller's to remove: the
        pattern kind's ``on_delete``, owed and retried (``handlers.cleanups``).
        """
        await self._log.run(
            self._delete,
            session_id,
            keys=[self._keys.session(session_id), *self.owned_keys(session_id)],
            args=[KIND, etypes.PATTERN_DELETED, _compact({"id": session_id}), DELETED_LOG_RETENTION_MS],
        )
        await self._sessions.unindex(session_id=session_id, owner_id=author_id)

    async def count_remix(self, parent_id: str, *, child: PatternRecord) -> int:
        """One more remix of ``parent_id`` (``child``, recorded among its children); the new count."""
        result = await self._log.run(
            self._remix_count,
            parent_id,
            keys=[self._keys.session(parent_id), self._keys.remix_children(parent_id)],
            args=[KIND, etypes.PATTERN_META, child.id, child.created_at],
        )
        count = int(result[1])
        # The admin sort index lives in the {admin} slot, so it follows in a step of its own:
        # XX leaves a session deleted meanwhile out, GT keeps the highest count when two remixes
        # race; a crash in between is what ``admin recalculate`` repairs. So is this step failing:
        # the remix is counted, and answering it 503 made a client's retry a second remix (a
        # CLIENT KILL landing here under load: tests/test_kill_midway.py).
        try:
            await self._redis.zadd(self._keys.admin_remixes(), {parent_id: count}, xx=True, gt=True)
        except (RedisConnectionError, RedisTimeoutError):
            log.warning("the admin remix index of %s was not updated (recalculate repairs it)", parent_id)
        return count

    async def add_child(self, parent_id: str, *, child: PatternRecord) -> bool:
        """Record a published copy among its source's children; False when the source is gone."""
        keys = [self._keys.session(parent_id), self._keys.remix_children(parent_id)]
        return bool(await self._child_add(keys=keys, args=[KIND, child.id, child.created_at]))

    async def forget_child(self, parent_id: str, child_id: str) -> None:
        """Drop a deleted session from its parent's children (another slot than the child's)."""
        await self._redis.zrem(self._keys.remix_children(parent_id), child_id)

    # --- live editing ----------------------------------------------------------------------
    async def apply(
        self, session_id: str, operation: Operation, *, event: dict[str, Any], max_tracks: int, sender: OpSender
    ) -> Applied:
        """Apply one operation atomically; returns the position of its event (of the first
        application, for a retry of an op already applied)."""
        k = self._keys
        seen = k.pattern_ops_seen(session_id)
        result = await self._log.run(
            self._op,
            session_id,
            keys=[
                k.session(session_id),
                k.pattern_players(session_id),
                seen,
                k.pattern_op_seen_before(session_id, sender.legacy_client_id or sender.client_id),
            ],
            args=[
                KIND,
                operation.kind,
                operation.track_id,
                operation.target,
                operation.value_json,
                max_tracks,
                etypes.PATTERN_OP,
                _compact(event),
                sender.player_id,
                sender.max_players,
                sender.max_state_bytes,
                sender.seq,
                OP_SEEN_TTL_MS,
                OP_SEEN_MAX_CLIENTS,
                sender.client_id,
                sender.legacy_client_id,
            ],
        )
        return Applied(position=Position(epoch=str(result[1] or ""), offset=int(result[0])), duplicate=result[2] == "1")

    async def presence(
        self,
        session_id: str,
        action: str,
        player_id: str,
        *,
        payload: str = "",
        ttl_ms: int = 0,
        max_players: int = 0,
        cursor_interval_ms: int = 0,
        replaces: str = "",
        places_per_user: int = 0,
    ) -> Presence:
        """Join, beat (with an optional cursor JSON) or leave; see ``lua/patterns/presence.lua``."""
        result = await self._log.run(
            self._presence,
            session_id,
            keys=[self._keys.session(session_id), self._keys.pattern_players(session_id)],
            args=[
                KIND,
                action,
                player_id,
                payload,
                self._clock.now_ms() + ttl_ms,
                max_players,
                cursor_interval_ms,
                etypes.PATTERN_PRESENCE,
                replaces,
                places_per_user,
            ],
            explain=_full_until,
        )
        return Presence(offset=int(result[0]), present=int(result[1]))

    async def snapshot(self, session_id: str) -> tuple[PatternRecord | None, list[dict[str, Any]], Position]:
        """Record, players present and the log position they reflect, read in one transaction."""
        fields, players_raw, meta = await read_together(
            self._redis,
            ("HGETALL", self._keys.session(session_id)),
            ("HVALS", self._keys.pattern_players(session_id)),
            ("HMGET", self._keys.log_meta(session_id), *POSITION_FIELDS),
        )
        record = PatternRecord.from_hash(fields) if fields.get("kind") == KIND else None
        now = self._clock.now_ms()
        players = []
        for raw in players_raw:
            player = json.loads(raw)
            if int(player.pop("expires_at", 0)) > now:  # expired ones leave on the next presence call
                player.pop("cursor_at", None)
                players.append(player)
        players.sort(key=lambda p: str(p.get("id", "")))
        return record, players, Position.from_meta(meta)

    # --- creation rate ---------------------------------------------------------------------
    async def creation_allowed(self, address: str, *, limit: int, limit_per_day: int) -> CreationWait | CreationCount:
        """Count one creation for ``address``: where it was counted, else how long until it is.

        Counted before the creation so that concurrent requests cannot all slip under the limit;
        a creation that then fails is given back with :meth:`creation_failed`. The day's cap
        bounds what one address stores over days, which the minute's limit alone does not
        (pattern sessions are anonymous and kept for ever): a refused creation counts in neither.
        """
        now_ms = self._clock.now_ms()
        minute = self._keys.rate("pattern_create", address, now_ms // 60_000)
        if not await take_one(self._redis, minute, limit=limit, ttl_s=120):
            return CreationWait(retry_after_s=seconds_left(now_ms, 60_000), window="minute")
        # Its own step: the two counters may live on different cluster slots. The day's counter
        # is the one voice and stream creations of the address count on too.
        day = self._keys.rate(CREATES_DAY_BUCKET, address, now_ms // DAY_MS)
        if not await take_one(self._redis, day, limit=limit_per_day, ttl_s=2 * DAY_MS // 1000):
            await self._redis.decr(minute)
            return CreationWait(retry_after_s=seconds_left(now_ms, DAY_MS), window="day")
        return CreationCount(minute_key=minute, day_key=day)

    async def creation_failed(self, counted: CreationCount) -> None:
        """Give back the count of a creation that was refused after being counted, to the
        windows it was counted in: a creation that fails after its minute (or day) turned gave
        it to the new window, as a -1 that never expired and one creation too many there."""
        for key in (counted.minute_key, counted.day_key):
            await self._redis.decr(key)


@dataclass(frozen=True, slots=True)
class CreationCount:
    """Where an allowed creation was counted (the keys of its minute and its day)."""

    minute_key: str
    day_key: str


@dataclass(frozen=True, slots=True)
class CreationWait:
    """A creation refused by a per-address limit: the seconds until the ``window`` (``minute``
    or ``day``) it was counted in ends, when a creation is counted afresh."""

    retry_after_s: int
    window: str


def _fields(record: PatternRecord) -> list[str]:
    values = {
        "id": record.id,
        "kind": KIND,
        "owner_id": "",
        "author_id": record.author_id,
        "name": record.name or "",
        "created_at": str(record.created_at),
        "updated_at": str(record.updated_at),
        "last_accessed_at": str(record.last_accessed_at),
        "remixed_from": record.remixed_from or "",
        "remixed_from_name": record.remixed_from_name or "",
        "remix_count": "0",
        "immutable": "1" if record.immutable else "0",
        "source_id": record.source_id or "",
    }
    return [item for pair in values.items() for item in pair] + _state_fields(record.state)


def _event_parts(event: dict[str, Any], state: dict[str, Any] | None) -> tuple[str, str]:
    """``event`` with ``state`` as its last member, as JSON cut where ``lua/replace.lua`` splices
    the kept fields in: before the state's closing brace (and the event's)."""
    if state is None:
        return _compact(event), ""
    head = _compact({**{k: v for k, v in event.items() if k != "state"}, "state": state})
    return head[:-2], head[-2:]


def _state_fields(state: dict[str, Any]) -> list[str]:
    """The state's fields as flat name, value pairs: split (``layout.split``), so that the first
    live op after a whole-state write pays no conversion; whole when it cannot be split."""
    return layout.split(state) or ["state", _compact(state)]


def _full_until(code: ErrorCode, detail: str) -> CodedError | None:
    """A full session's refusal with ``retry_after_s``: until the first present player's place
    may free (it expires unless it beats again; presence.lua says in ms). A user at their places'
    limit: with that ``limit``."""
    if code is ErrorCode.LIMIT_REACHED and detail.isdigit():
        return CodedError(code, limit=int(detail))
    if code is not ErrorCode.SESSION_FULL or not detail.isdigit():
        return None
    return CodedError(code, retry_after_s=max(math.ceil(int(detail) / 1000), 1))
