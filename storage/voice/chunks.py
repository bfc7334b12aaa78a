"""Audio chunks of voice sessions: metadata in Redis (the files live in the blob store).

A chunk is stored once per session per sha256 and start (a retry repeats both; the same audio at
another start is a chunk of its own, its file shared); each new one is a ``new_message`` event with the
session's running totals (chunks, audio ms, bytes stored), so a page keeps them without a read.

A closed session takes a *late* chunk: one its recorder started before the close (within
:data:`LATE_CHUNK_SKEW_MS` of the recorder's clock), arriving up to the configured window after
it (``SESSIONHUB_VOICE_LATE_CHUNKS_S``): a phone offline at the close, or a recorder that heard
of the close only afterwards, keeps what it recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from protocol import events as etypes
from protocol.errors import CodedError, ErrorCode
from storage.events import EventLog
from storage.keys import Keys
from storage.scripts import event_script
from storage.voice.repository import Performer

# How far the recorder's clock (a chunk's start_ms) may run ahead of the server's when a late
# chunk's start is compared with the session's closed_at: a chunk started up to this long after
# the close is still taken as recorded before it. Phones keep network time to well within it.
LATE_CHUNK_SKEW_MS = 5000
# A late chunk's start may be at most this long before the session was made: a start further
# back is no unix time (a client that counts from its recording's start, which the chunk form
# allows) and says nothing about the close, so such a chunk is refused on a closed session.
LATE_CHUNK_EARLIEST_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class NewChunk:
    """What the upload route learned about one chunk before storing it."""

    sha256: str
    mime: str
    size_bytes: int
    start_ms: int
    end_ms: int
    duration_ms: int
    client_duration_ms: int
    duration_source: str  # "webm", "ogg", "wav" (read from the file) or "client"
    speaker: str
    uploaded_by: str
    uploaded_at: int

    def to_json(self) -> str:
        """The stored JSON (chunk id and sequence number are added by the script)."""
        fields = {
            "sha256": self.sha256,
            "mime": self.mime,
            "size_bytes": self.size_bytes,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "duration_ms": self.duration_ms,
            "client_duration_ms": self.client_duration_ms,
            "duration_source": self.duration_source,
            "speaker": self.speaker,
            "uploaded_by": self.uploaded_by,
            "uploaded_at": self.uploaded_at,
        }
        return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class ChunkAdded:
    """Outcome of an upload: ``duplicate`` when the same audio was stored before (offset 0);
    ``late`` when a closed session took it after its close (for a duplicate: it was stored so)."""

    chunk_id: str
    duplicate: bool
    offset: int
    chunk_count: int
    audio_ms: int
    storage_bytes: int
    late: bool = False
    # What this chunk added to the session's storage: its file's size, but 0 for a duplicate and
    # for one whose file an earlier chunk of the same audio holds (the quota settles at it).
    stored_bytes: int = 0


class VoiceChunks:
    """Repository of a voice session's audio chunks."""

    def __init__(self, *, redis: Redis, keys: Keys, log: EventLog) -> None:
        self._redis = redis
        self._keys = keys
        self._log = log
        self._add = event_script(redis, "voice/chunk_add.lua")
        self._note = event_script(redis, "voice/chunk_note.lua")

    def _session_keys(self, session_id: str) -> list[str]:
        k = self._keys
        return [
            k.session(session_id),
            k.voice_chunks(session_id),
            k.voice_chunk_order(session_id),
            k.voice_chunk_digests(session_id),
        ]

    async def add(
        self,
        session_id: str,
        chunk: NewChunk,
        performer: Performer,
        *,
        max_chunks: int,
        late_window_ms: int,
        recorder_behind_ms: int = 0,
    ) -> ChunkAdded:
        """Store a chunk (access, open state or a late chunk's times, dedupe and cap checked in the
        same step); a closed session takes a late one up to ``late_window_ms`` after its close.
        ``recorder_behind_ms``: how far the recorder's clock runs behind the server's, so that a
        late chunk's start is compared with the close on one clock. A full session is
        ``limit_reached`` with ``limit``, as a full one of materials is."""

        def full(code: ErrorCode, _: str) -> CodedError | None:
            if code is ErrorCode.LIMIT_REACHED:
                return CodedError(code, f"a voice session holds at most {max_chunks} audio chunks", limit=max_chunks)
            if code is ErrorCode.INVALID_STATE:  # said apart from the generic words: a bot can tell
                return CodedError(
                    code,
                    "the session is not recording audio: it is closed (Done) or inactive; a closed session takes"
                    f" only a chunk recorded before its close, within {late_window_ms // 1000} s of it",
                )
            return None

        result = await self._log.run(
            self._add,
            session_id,
            keys=self._session_keys(session_id),
            args=[
                *performer.args(),
                chunk.sha256,
                chunk.to_json(),
                chunk.start_ms,
                chunk.size_bytes,
                chunk.duration_ms,
                max_chunks,
                etypes.NEW_MESSAGE,
                late_window_ms,
                # start + behind < closed_at + skew, and start + behind >= created_at - earliest,
                # as the script compares the start (on the recorder's clock) unmoved.
                LATE_CHUNK_SKEW_MS - recorder_behind_ms,
                LATE_CHUNK_EARLIEST_MS + recorder_behind_ms,
            ],
            explain=full,
        )
        offset, chunk_id, duplicate, count, audio_ms, stored, late, added = result
        return ChunkAdded(
            chunk_id=str(chunk_id),
            duplicate=bool(int(duplicate)),
            offset=int(offset),
            chunk_count=int(count),
            audio_ms=int(audio_ms),
            storage_bytes=int(stored),
            late=bool(int(late)),
            stored_bytes=int(added),
        )

    async def list(self, session_id: str, *, limit: int) -> list[dict[str, Any]]:
        """The session's chunks in order (start time, then upload order)."""
        ids: Any = await self._redis.zrange(self._keys.voice_chunk_order(session_id), 0, limit - 1)
        if not ids:
            return []
        texts: Any = await self._redis.hmget(self._keys.voice_chunks(session_id), ids)
        return [json.loads(t) for t in texts if t]

    async def get(self, session_id: str, chunk_id: str) -> dict[str, Any] | None:
        """One chunk, or None."""
        text: Any = await self._redis.hget(self._keys.voice_chunks(session_id), chunk_id)
        return json.loads(text) if text else None

    async def is_referenced(self, session_id: str, sha256: str) -> bool:
        """True when a stored chunk of the session points at this audio."""
        return bool(await self._redis.hexists(self._keys.voice_chunk_digests(session_id), sha256))

    async def annotate(self, session_id: str, chunk_id: str, fields: dict[str, Any]) -> int:
        """Merge ``fields`` into a stored chunk and publish it as ``chunk_updated``."""
        result = await self._log.run(
            self._note,
            session_id,
            keys=[self._keys.session(session_id), self._keys.voice_chunks(session_id)],
            args=[chunk_id, json.dumps(fields, separators=(",", ":")), etypes.CHUNK_UPDATED],
        )
        return int(result[0])
