"""Voice sessions in the kind registry: seed 002's access rule, snapshot and listing shape."""

from __future__ import annotations

from typing import Any

from auth.access import require_read, require_update
from auth.claims import Claims
from handlers.context import Services
from handlers.kinds import SessionKind, Snapshot
from handlers.voice.actions import session_url
from storage.sessions import SessionMeta
from storage.voice.repository import KIND


class VoiceKind(SessionKind):
    """Readable with ``read_all``, or ``read_own`` by the owner; writable with ``update`` too."""

    name = KIND

    def __init__(self, services: Services) -> None:
        self._s = services

    def check_read(self, claims: Claims, meta: SessionMeta) -> None:
        require_read(claims, meta.owner_id)

    def check_write(self, claims: Claims, meta: SessionMeta) -> None:
        require_update(claims, meta.owner_id)

    async def snapshot(self, session_id: str) -> Snapshot | None:
        session, position = await self._s.voice.snapshot(session_id)
        if session is None:
            return None
        return Snapshot(session={**session.public(), "url": session_url(self._s, session_id)}, position=position)

    def owned_keys(self, session_id: str) -> list[str]:
        k = self._s.keys
        return [
            k.materials(session_id),
            k.voice_chunks(session_id),
            k.voice_chunk_order(session_id),
            k.voice_chunk_digests(session_id),
        ]

    async def on_delete(self, session_id: str, record: dict[str, str]) -> None:
        """The owner's list and active pointer, then the audio files on disk."""
        owner_id = record.get("owner_id", "")
        if owner_id:
            await self._s.voice.forget(session_id, owner_id=owner_id)
        await self._s.voice.blobs.remove_session(session_id)

    def summary(self, record: dict[str, str]) -> dict[str, Any]:
        return {
            "title": record.get("name") or "Untitled voice session",
            "url": session_url(self._s, record.get("id", "")),
            "status": record.get("status", ""),
        }
