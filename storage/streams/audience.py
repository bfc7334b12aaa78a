"""The audience of a stream session: a companion session that viewer pages follow.

A stream session's log carries every clip: at a raid of a thousand viewers, a thousand clicks
in a second. If every viewer page followed that log, each click would reach every viewer (a
million deliveries for that one second) while a viewer needs only the state (live, paused,
ended). So each stream session has an audience session (kind ``stream_audience``) whose log
carries the state changes only; ``/watch/<id>`` subscribes to it. Its snapshot reads the
stream's record, so a viewer that (re)subscribes always gets the current state.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from protocol import events as etypes
from protocol.errors import CodedError, ErrorCode
from storage.events import POSITION_FIELDS, Position
from storage.lean_redis import read_together
from storage.scripts import event_script
from storage.store import Store

AUDIENCE_KIND = "stream_audience"
# A deleted audience's log stays this long, so a viewer resuming from an offset learns of it.
DELETED_LOG_RETENTION_MS = 86_400_000


class StreamAudiences:
    """Creates audience sessions, copies state changes onto them, reads their snapshots."""

    def __init__(self, store: Store) -> None:
        redis = self._redis = store.redis
        self._keys = store.keys
        self._scripts = store.scripts
        self._log = store.log
        self._sessions = store.sessions
        self._mirror = event_script(redis, "streams/audience_state.lua")
        self._note = event_script(redis, "streams/audience_note.lua")
        self._delete = event_script(redis, "core/session_delete.lua")

    @staticmethod
    def new_id() -> str:
        """A fresh audience session id (given to the stream's record before either is written)."""
        return str(uuid.uuid4())

    async def create(self, *, audience_id: str, stream_id: str, owner_id: str, now_ms: int) -> None:
        """Write the audience record and open its log; only the global index lists it."""
        fields = {
            "id": audience_id,
            "kind": AUDIENCE_KIND,
            "owner_id": owner_id,
            "stream_id": stream_id,
            "state": "created",
            "segment_index": "0",
            "state_seq": "0",
            "created_at": str(now_ms),
            "updated_at": str(now_ms),
        }
        # Not in the owner's own list: it is a part of the stream session, not a session they made.
        await self._sessions.index(session_id=audience_id, owner_id="", created_ms=now_ms, kind=AUDIENCE_KIND)
        data = json.dumps({"stream_id": stream_id, "state": "created"}, separators=(",", ":"))
        await self._log.run(
            self._scripts.session_create,
            audience_id,
            keys=[self._keys.session(audience_id)],
            args=[etypes.SESSION_UPDATE, data, *[x for pair in fields.items() for x in pair]],
            now_ms=now_ms,
        )
        # Counted now: nobody opens an audience session as such (viewers subscribe to it), so it
        # stayed at 0 bytes in the storage totals until a recalculation.
        await self._sessions.record_size(audience_id, AUDIENCE_KIND)

    async def mirror(
        self, audience_id: str, *, seq: int, state: str, previous: str, action: str, segment_index: int
    ) -> int:
        """Copy one state change (see ``audience_state.lua``); 0 when a later one is there already."""
        result = await self._log.run(
            self._mirror,
            audience_id,
            keys=[self._keys.session(audience_id)],
            args=[seq, state, previous, action, segment_index, etypes.STREAM_STATE],
        )
        return int(result[0])

    async def note(self, audience_id: str, event_type: str, data: dict[str, Any]) -> int:
        """Append one event about a viewer to the audience log (see ``audience_note.lua``)."""
        result = await self._log.run(
            self._note,
            audience_id,
            keys=[self._keys.session(audience_id)],
            args=[event_type, json.dumps(data, separators=(",", ":"))],
        )
        return int(result[0])

    async def delete(self, audience_id: str, *, stream_id: str) -> None:
        """Delete the audience of a deleted stream: viewers get ``session_deleted`` on its log."""
        data = json.dumps({"id": audience_id, "stream_id": stream_id, "by": "stream_deleted"}, separators=(",", ":"))
        try:
            await self._log.run(
                self._delete,
                audience_id,
                keys=[self._keys.session(audience_id)],
                args=[etypes.SESSION_DELETED, data, DELETED_LOG_RETENTION_MS, ""],  # no orphan bound
            )
        except CodedError as exc:
            if exc.code is not ErrorCode.SESSION_NOT_FOUND:
                raise  # gone already (a retried cleanup): only the indexes are left to drop
        await self._sessions.unindex(session_id=audience_id, owner_id="")

    async def position_and_stream(self, audience_id: str) -> tuple[str | None, Position]:
        """The stream id of an audience session (None when there is none) and its log position."""
        (kind, stream_id), meta = await read_together(
            self._redis,
            ("HMGET", self._keys.session(audience_id), "kind", "stream_id"),
            ("HMGET", self._keys.log_meta(audience_id), *POSITION_FIELDS),
        )
        found: Any = stream_id if kind == AUDIENCE_KIND else None
        return found, Position.from_meta(meta)
