"""Voice sessions (seed 002): the record, the per-user active session and the status pictogram."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypedDict

from protocol import events as etypes
from protocol.errors import CodedError, ErrorCode
from storage.events import POSITION_FIELDS, Position, Submitted
from storage.lean_redis import read_together
from storage.scripts import checked, event_script, plain_script
from storage.store import Store
from storage.voice.blobs import open_blobs
from storage.voice.config import VoiceConfig

KIND = "voice"

STATUSES: tuple[str, ...] = (
    "ready",
    "recording",
    "cutting",
    "paused",
    "final_uploading",
    "closed",
    "error",
)

# Which statuses each status may be entered from by the owner's recorder. `closed` is not
# here: only Done closes a session, and a closed session takes no more recording.
TRANSITIONS: dict[str, frozenset[str]] = {
    "ready": frozenset({"recording", "cutting", "paused", "final_uploading", "error"}),
    "recording": frozenset({"ready", "cutting", "paused", "error"}),
    "cutting": frozenset({"recording"}),
    # From final_uploading: the FAB's Done could not close the session and hands it back paused.
    "paused": frozenset({"recording", "cutting", "final_uploading"}),
    # From ready and error too: Done on a session that never recorded, or after a failure.
    "final_uploading": frozenset({"ready", "recording", "cutting", "paused", "error"}),
    "error": frozenset({"ready", "recording", "cutting", "paused", "final_uploading"}),
}

# The table as set_status.lua takes it (",ready,paused,"): built once, not per change.
_ALLOWED_FROM: dict[str, str] = {status: "," + ",".join(sorted(f)) + "," for status, f in TRANSITIONS.items()}


# The session record's field keeping its last job step or outcome (``VoiceSession.last_job``).
LAST_JOB_FIELD = "last_job"


# ``EventLog.append_kept``'s field and kind for a job's step or outcome: a voice session keeps it.
class KeptField(TypedDict):
    """``EventLog.append_kept``'s ``field`` and ``kind``, given as ``**KEEP_LAST_JOB``."""

    field: str
    kind: str


KEEP_LAST_JOB: KeptField = {"field": LAST_JOB_FIELD, "kind": KIND}


@dataclass(frozen=True, slots=True)
class VoiceSession:
    """A voice session as stored."""

    id: str
    owner_id: str
    telegram_user_id: str
    name: str
    status: str
    is_active: bool
    done_count: int
    created_at: int
    updated_at: int
    closed_at: int | None
    chunk_count: int = 0
    audio_ms: int = 0
    storage_bytes: int = 0
    digest: dict[str, Any] | None = None
    tasks: list[Any] | None = None
    # Its last job step or outcome (a job_progress or job_result event's data, with ``at``): a
    # page opened while it is processed said "No jobs yet" and offered "Process now".
    last_job: dict[str, Any] | None = None

    @classmethod
    def from_hash(cls, fields: dict[str, str]) -> VoiceSession:
        """Build from the stored hash (``decode_responses=True``)."""
        closed_at = fields.get("closed_at") or ""
        return cls(
            id=fields["id"],
            owner_id=fields["owner_id"],
            telegram_user_id=fields.get("telegram_user_id", ""),
            name=fields.get("name", ""),
            status=fields.get("status", "ready"),
            is_active=fields.get("is_active") == "1",
            done_count=int(fields.get("done_count") or 0),
            created_at=int(fields["created_at"]),
            updated_at=int(fields.get("updated_at") or fields["created_at"]),
            closed_at=int(closed_at) if closed_at else None,
            chunk_count=int(fields.get("chunk_count") or 0),
            audio_ms=int(fields.get("audio_ms") or 0),
            storage_bytes=int(fields.get("storage_bytes") or 0),
            digest=json.loads(fields["digest"]) if fields.get("digest") else None,
            tasks=json.loads(fields["tasks"]) if fields.get("tasks") else None,
            last_job=json.loads(fields[LAST_JOB_FIELD]) if fields.get(LAST_JOB_FIELD) else None,
        )

    def public(self) -> dict[str, Any]:
        """The fields clients see (no URL: that is the handlers' business)."""
        return {
            "session_id": self.id,
            "session_name": self.name,
            "owner_id": self.owner_id,
            "status": self.status,
            "is_active": self.is_active,
            "done_count": self.done_count,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "closed_at": self.closed_at,
            "chunk_count": self.chunk_count,
            "audio_ms": self.audio_ms,
            "storage_bytes": self.storage_bytes,
            "digest": self.digest,
            "tasks": self.tasks,
            "last_job": self.last_job,
        }


@dataclass(frozen=True, slots=True)
class Performer:
    """Who asks for a change, as the access rule in the scripts needs it (from verified claims)."""

    user_id: str
    read_scope: str  # "all", "own" or "none"
    may_update: bool

    def args(self) -> list[str]:
        """The three script arguments that carry the performer."""
        return [self.user_id, self.read_scope, "1" if self.may_update else "0"]


@dataclass(frozen=True, slots=True)
class StatusChange:
    """Outcome of a status request: ``offset`` is 0 when nothing changed."""

    status: str
    previous: str
    offset: int
    # Whether the request's connection holds the recording lease now (a recording status).
    holds: bool = False


PAUSED_ELSEWHERE = "paused_elsewhere"
RECORDING_ELSEWHERE = "recording_elsewhere"

_ELSEWHERE_SAID = {
    PAUSED_ELSEWHERE: (
        "the session was paused on another tab or device while this recorder was away: press Resume to record"
    ),
    RECORDING_ELSEWHERE: "another tab or device records this session now: what this recorder recorded is kept",
}


def _paused_elsewhere(code: ErrorCode, detail: str) -> CodedError | None:
    """A recorder's resume refused: a person paused the session while it was away, or another
    recorder took it up meanwhile (its own pause refused for the same reason; set_status.lua)."""
    message = _ELSEWHERE_SAID.get(detail)
    if code is not ErrorCode.INVALID_STATE or message is None:
        return None
    return CodedError(code, message, reason=detail)


def status_change(status: str, result: list[Any]) -> StatusChange:
    """The outcome of the status script's checked answer for a request to move to ``status``."""
    holds = len(result) > 2 and int(result[2]) == 1
    return StatusChange(status=status, previous=str(result[1]), offset=int(result[0]), holds=holds)


# How long the answer to one press of Done, Process or Tasks (a client-chosen request id) is
# kept for its resends: a page resends a press once it is connected again, a day covers a
# laptop closed overnight. Bounded in count too: a user queues at most 30 jobs a minute.
REQUEST_TTL_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class DoneResult:
    """Outcome of a Done: the new count, the status the session had before and the job id of
    the press (``repeated``: a resend of a press already answered, which changed nothing)."""

    done_count: int
    previous_status: str
    offset: int
    job_id: str = ""
    repeated: bool = False


@dataclass(frozen=True, slots=True)
class ActivePointer:
    """The user's active session (None: none) and how many times it changed so far (``seq``)."""

    session_id: str | None
    seq: int

    def wire(self) -> dict[str, Any]:
        """The ``active_session`` event's payload (as ``active_set.lua`` announces a change)."""
        return {"session_id": self.session_id, "seq": self.seq}


class VoiceSessions:
    """Repository of voice sessions and users' active-session pointers."""

    def __init__(self, store: Store, *, config: VoiceConfig | None = None) -> None:
        self.config = config or VoiceConfig()
        self.blobs = open_blobs(self.config.blob_dir, self.config.s3)  # one per process: a client for S3
        redis = self._redis = store.redis
        self._keys = store.keys
        self._scripts = store.scripts
        self._log = store.log
        self._clock = store.clock
        self._sessions = store.sessions
        self._set_status = event_script(redis, "voice/set_status.lua")
        self._done = event_script(redis, "voice/done.lua")
        self._material_add = event_script(redis, "voice/material_add.lua")
        self._material_note = plain_script(redis, "voice/material_note.lua")
        self._active_set = plain_script(redis, "voice/active_set.lua")
        self._active_clear = plain_script(redis, "voice/active_clear.lua")
        self._active_take = plain_script(redis, "voice/active_take.lua")
        self._active_restore = plain_script(redis, "voice/active_restore.lua")
        self._delete = event_script(redis, "voice/session_delete.lua")
        self._outcome_if_newer = event_script(redis, "voice/outcome_if_newer.lua")
        self._request_claim = plain_script(redis, "voice/request_claim.lua")

    async def create(
        self, *, owner_id: str, telegram_user_id: str, name: str, session_id: str | None = None
    ) -> VoiceSession:
        """Create an open session owned by ``owner_id``, status ``ready``; ``session_id`` (else a
        fresh one) taken already by ``owner_id``'s voice session gives that one (a retry's, whose
        id is derived from its Idempotency-Key: see handlers/idempotency.py), else ``conflict``."""
        now = self._clock.now_ms()
        session = VoiceSession(
            id=session_id or str(uuid.uuid4()),
            owner_id=owner_id,
            telegram_user_id=telegram_user_id,
            name=name,
            status="ready",
            is_active=True,
            done_count=0,
            created_at=now,
            updated_at=now,
            closed_at=None,
        )
        # The indexes are written first (see storage/sessions.py for why).
        await self._redis.zadd(self._keys.user_sessions(owner_id), {session.id: now})
        await self._sessions.index(session_id=session.id, owner_id=owner_id, created_ms=now, kind=KIND)
        try:
            await self._log.run(
                self._scripts.session_create,
                session.id,
                keys=[self._keys.session(session.id)],
                args=[etypes.SESSION_UPDATE, json.dumps(session.public(), separators=(",", ":")), *_fields(session)],
                now_ms=now,
            )
        except CodedError as exc:
            made = await self.get(session.id) if session_id and exc.code is ErrorCode.CONFLICT else None
            if made is None or made.owner_id != owner_id:
                raise
            return made
        return session

    async def get(self, session_id: str) -> VoiceSession | None:
        """The session, or None when there is none of kind voice with that id."""
        fields: dict[str, str] = await self._redis.hgetall(self._keys.session(session_id))  # type: ignore[assignment]  # decode_responses=True
        return VoiceSession.from_hash(fields) if fields.get("kind") == KIND else None

    async def snapshot(self, session_id: str) -> tuple[VoiceSession | None, Position]:
        """The record and the log position it reflects, read in one transaction."""
        fields, meta = await read_together(
            self._redis,
            ("HGETALL", self._keys.session(session_id)),
            ("HMGET", self._keys.log_meta(session_id), *POSITION_FIELDS),
        )
        session = VoiceSession.from_hash(fields) if fields.get("kind") == KIND else None
        return session, Position.from_meta(meta)

    async def list_for_user(self, owner_id: str, *, limit: int) -> list[VoiceSession]:
        """The user's sessions, newest first."""
        ids: Any = await self._redis.zrevrange(self._keys.user_sessions(owner_id), 0, limit - 1)
        async with self._redis.pipeline(transaction=False) as pipe:
            for session_id in ids:
                pipe.hgetall(self._keys.session(session_id))
            records = await pipe.execute()
        return [VoiceSession.from_hash(r) for r in records if r.get("kind") == KIND]

    async def active_id(self, user_id: str) -> str | None:
        """The user's active session id, if any."""
        value = await self._redis.get(self._keys.active_session(user_id))
        return str(value) if value else None

    async def active_pointer(self, user_id: str) -> ActivePointer:
        """The user's active session and its change count, read together (one MGET: one slot)."""
        keys = self._keys
        session_id, seq = await self._redis.mget(keys.active_session(user_id), keys.active_session_seq(user_id))
        return ActivePointer(session_id=str(session_id) if session_id else None, seq=int(seq or 0))

    async def set_active(self, user_id: str, session_id: str) -> None:
        """Make ``session_id`` the user's active session, announced to every client of the user
        in the same step (``active_set.lua``)."""
        channel = self._keys.active_session_channel(user_id)
        await self._active_set(keys=self._active_keys(user_id), args=[session_id, channel])

    async def clear_active_if(
        self, user_id: str, session_id: str, *, unchanged_since: int | None = None
    ) -> tuple[bool, int]:
        """Clear the user's active session only when it still is ``session_id`` (announced as
        :meth:`set_active` announces) and, given ``unchanged_since``, the pointer's change count
        is still that: ``(cleared, the change count after)``."""
        channel = self._keys.active_session_channel(user_id)
        since = "" if unchanged_since is None else str(unchanged_since)
        cleared, seq = await self._active_clear(keys=self._active_keys(user_id), args=[session_id, channel, since])
        return bool(cleared), int(seq)

    async def take_active(self, user_id: str, request_id: str = "") -> tuple[str | None, bool]:
        """The user's active session for a ``/done``, cleared in the same step (``active_take.lua``):
        ``(session id or None, taken now)``. Of two presses at once one takes it, the other gets
        None; a resend of a ``request_id`` gets what that press took (``False``: taken before)."""
        keys = [*self._active_keys(user_id), self._keys.active_session_taken(user_id, request_id)]
        channel = self._keys.active_session_channel(user_id)
        session_id, now = await self._active_take(keys=keys, args=[channel, request_id, REQUEST_TTL_MS])
        return (str(session_id) or None), bool(int(now))

    async def restore_active(self, user_id: str, session_id: str) -> bool:
        """Make ``session_id`` active again if none is (a ``/done`` whose close failed)."""
        channel = self._keys.active_session_channel(user_id)
        return bool(await self._active_restore(keys=self._active_keys(user_id), args=[session_id, channel]))

    def _active_keys(self, user_id: str) -> list[str]:
        return [self._keys.active_session(user_id), self._keys.active_session_seq(user_id)]

    async def set_status(
        self,
        session_id: str,
        status: str,
        performer: Performer,
        *,
        holder: str = "",
        lease_ms: int = 0,
        resume: bool = False,
        own: bool = False,
        ahead: tuple[Any, ...] | None = None,
    ) -> StatusChange:
        """Move the status pictogram: the owner only, and only along the transition table.

        Access, ownership and the transition are checked inside the script that changes it.
        With a ``holder`` (a recording connection, storage/voice/recording.py), recording or
        cutting gives it the session's recording lease for ``lease_ms`` and any other status
        ends the lease, in the same step; a recording status the session already has moves the
        lease only on ``resume`` (the recorder's own connection came back) or when nobody holds
        it. ``own``: a recorder's pause of its own recording only (refused while another records).
        ``ahead``: a write Redis runs first (``EventLog.run``).
        """
        keys, args = self._status_call(session_id, status, performer, holder, lease_ms, resume, own)
        result = await self._log.run(
            self._set_status, session_id, keys=keys, args=args, ahead=ahead, explain=_paused_elsewhere
        )
        return status_change(status, result)

    def submit_status(
        self,
        session_id: str,
        status: str,
        performer: Performer,
        *,
        holder: str = "",
        lease_ms: int = 0,
        resume: bool = False,
        own: bool = False,
        ahead: tuple[Any, ...] | None = None,
    ) -> Submitted | None:
        """:meth:`set_status` sent now without a task (``EventLog.submit``): its reply read
        with :func:`status_change`; None, having sent nothing, when it must be awaited."""
        keys, args = self._status_call(session_id, status, performer, holder, lease_ms, resume, own)
        return self._log.submit(
            self._set_status, session_id, keys=keys, args=args, ahead=ahead, explain=_paused_elsewhere
        )

    def _status_call(
        self,
        session_id: str,
        status: str,
        performer: Performer,
        holder: str,
        lease_ms: int,
        resume: bool,
        own: bool = False,
    ) -> tuple[list[str], list[Any]]:
        allowed = _ALLOWED_FROM.get(status)
        if allowed is None:
            raise CodedError(ErrorCode.INVALID_STATE, f"status {status!r} cannot be set directly")
        keys = [self._keys.session(session_id), self._keys.voice_recording_lease(session_id)]
        flags = ["1" if resume else "", "1" if own else ""]
        args = [*performer.args(), status, allowed, etypes.SESSION_STATUS, holder, lease_ms, *flags]
        return keys, args

    async def done(
        self, session_id: str, performer: Performer, *, job_id: str = "", request_id: str = ""
    ) -> DoneResult:
        """Close the session (access checked in the same step); repeated calls each count, but
        a resend of one ``request_id`` is answered as its first call was (its done_count and
        job id, ``repeated``), in the same step."""
        request_key = self._keys.voice_request(session_id, "done", performer.user_id, request_id)
        result = await self._log.run(
            self._done,
            session_id,
            keys=[self._keys.session(session_id), request_key],
            args=[
                *performer.args(),
                etypes.SESSION_UPDATE,
                etypes.SESSION_STATUS,
                request_id,
                job_id,
                REQUEST_TTL_MS,
            ],
        )
        return DoneResult(
            offset=int(result[0]),
            done_count=int(result[1]),
            previous_status=str(result[2]),
            job_id=str(result[3]),
            repeated=bool(int(result[4])),
        )

    async def claim_request(
        self, session_id: str, action: str, user_id: str, request_id: str, answer: dict[str, Any]
    ) -> dict[str, Any] | None:
        """None when ``request_id`` is new (``answer`` is now kept for its resends), else the
        answer its first call stored (``request_claim.lua``)."""
        key = self._keys.voice_request(session_id, action, user_id, request_id)
        claimed, stored = await self._request_claim(
            keys=[key], args=[json.dumps(answer, separators=(",", ":")), REQUEST_TTL_MS]
        )
        if int(claimed):
            return None
        kept: dict[str, Any] = json.loads(stored)
        return kept

    async def answered(self, session_id: str, action: str, user_id: str, request_id: str) -> bool:
        """Whether ``request_id`` of ``user_id`` has an answer kept (a resend of a press)."""
        return bool(await self._redis.exists(self._keys.voice_request(session_id, action, user_id, request_id)))

    async def delete(self, session_id: str, performer: Performer, *, log_ttl_s: int = 86400) -> int:
        """Delete the owner's session and its stored data; returns the audio bytes it held.

        The record goes first and the indexes after (a leftover index entry is skipped by
        listings, see storage/sessions.py). The owner's list and active pointer (the owner's
        slot, :meth:`forget`) and the blob files are the caller's to remove: the voice kind's
        ``on_delete``, owed and retried (``handlers.cleanups``).
        """
        k = self._keys
        result = await self._log.run(
            self._delete,
            session_id,
            keys=[
                k.session(session_id),
                k.materials(session_id),
                k.voice_chunks(session_id),
                k.voice_chunk_order(session_id),
                k.voice_chunk_digests(session_id),
            ],
            args=[*performer.args(), etypes.SESSION_UPDATE, log_ttl_s],
        )
        await self._sessions.unindex(session_id=session_id, owner_id=performer.user_id)
        return int(result[1])

    async def forget(self, session_id: str, *, owner_id: str) -> None:
        """Drop a deleted session from its owner's list and active pointer (the owner's slot)."""
        await self._redis.zrem(self._keys.user_sessions(owner_id), session_id)
        await self.clear_active_if(owner_id, session_id)

    async def add_material(self, session_id: str, material: dict[str, Any], *, max_count: int) -> tuple[int, int]:
        """Attach a material to an open session; returns (event offset, materials held).

        Idempotent by ``material["material_id"]``: the same material again is not stored twice
        (offset 0), so a call whose reply was lost may be run again. A full session is
        ``limit_reached`` with ``limit``: a lasting state, which no retry changes."""

        def full(code: ErrorCode, _: str) -> CodedError | None:
            if code is ErrorCode.LIMIT_REACHED:
                return CodedError(code, f"a voice session holds at most {max_count} materials", limit=max_count)
            return None

        result = await self._log.run(
            self._material_add,
            session_id,
            keys=[self._keys.session(session_id), self._keys.materials(session_id)],
            args=[
                json.dumps(material, separators=(",", ":")),
                max_count,
                etypes.MATERIAL_ADDED,
                material["material_id"],
            ],
            explain=full,
        )
        return int(result[0]), int(result[1])

    async def note_material(self, session_id: str, material_id: str, fields: dict[str, Any], *, hint: int = -1) -> int:
        """Merge ``fields`` into a stored material (``material_note.lua``; ``hint``: its index in
        the list when known); its index. ``session_not_found`` or ``not_found`` when it is gone."""
        result = await self._material_note(
            keys=[self._keys.session(session_id), self._keys.materials(session_id)],
            args=[material_id, hint, json.dumps(fields, separators=(",", ":"), ensure_ascii=False)],
        )
        return int(checked(result)[0])

    async def materials(self, session_id: str, *, limit: int) -> list[dict[str, Any]]:
        """The session's materials, oldest first."""
        texts: Any = await self._redis.lrange(self._keys.materials(session_id), 0, limit - 1)
        return [json.loads(t) for t in texts]

    async def material_page(self, session_id: str, *, start: int, count: int) -> list[dict[str, Any]]:
        """``count`` of the session's materials from the ``start``-th, oldest first (one read)."""
        texts: Any = await self._redis.lrange(self._keys.materials(session_id), start, start + count - 1)
        return [json.loads(t) for t in texts]

    async def material_pages(
        self, session_id: str, *, limit: int, page_size: int
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The session's first ``limit`` materials, oldest first, ``page_size`` at a time.

        Each page is one bounded read and parse: a job reading a full session hands the event
        loop back between pages instead of parsing every material in one go."""
        for start in range(0, limit, page_size):
            end = min(start + page_size, limit) - 1
            texts: Any = await self._redis.lrange(self._keys.materials(session_id), start, end)
            if texts:
                yield [json.loads(t) for t in texts]
            if len(texts) < end - start + 1:
                return

    async def record_outcome(self, session_id: str, fields: dict[str, str], data: dict[str, Any]) -> int:
        """Store job results on the record and publish them as one ``session_update``."""
        pairs = [item for pair in fields.items() for item in pair]
        result = await self._log.run(
            self._scripts.session_update,
            session_id,
            keys=[self._keys.session(session_id)],
            args=[etypes.SESSION_UPDATE, json.dumps(data, separators=(",", ":")), *pairs],
        )
        return int(result[0])

    async def record_digest(
        self, session_id: str, read_at_ms: int, fields: dict[str, str], data: dict[str, Any]
    ) -> bool:
        """Store a processing job's digest as :meth:`record_outcome` does, unless a job that read the
        session after ``read_at_ms`` stored its own (two runs finishing out of order: the later
        read's digest stays). False, nothing written, then."""
        pairs = [item for pair in fields.items() for item in pair]
        result = await self._log.run(
            self._outcome_if_newer,
            session_id,
            keys=[self._keys.session(session_id)],
            args=[
                etypes.SESSION_UPDATE,
                json.dumps(data, separators=(",", ":")),
                DIGEST_READ_AT,
                str(read_at_ms),
                *pairs,
            ],
        )
        return not (len(result) > 1 and result[1] == SUPERSEDED)


# The record field saying when the stored digest's job read the session (ms): not in any answer.
DIGEST_READ_AT = "digest_read_at"
SUPERSEDED = "superseded"


def _fields(session: VoiceSession) -> list[str]:
    values = {
        "id": session.id,
        "kind": KIND,
        "owner_id": session.owner_id,
        "telegram_user_id": session.telegram_user_id,
        "name": session.name,
        "status": session.status,
        "is_active": "1" if session.is_active else "0",
        "done_count": str(session.done_count),
        "created_at": str(session.created_at),
        "updated_at": str(session.updated_at),
        "closed_at": "",
    }
    return [item for pair in values.items() for item in pair]
