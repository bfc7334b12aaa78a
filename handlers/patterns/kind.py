"""Pattern sessions in the kind registry: the link is the capability, the snapshot has players."""

from __future__ import annotations

from typing import Any

from auth.claims import Claims
from handlers.kinds import SessionKind, Snapshot
from handlers.patterns.views import full_view, parent_name_now, session_url
from storage.patterns.repository import KIND, PatternSessions
from storage.sessions import SessionMeta


class PatternKind(SessionKind):
    """Any valid token (guests included) may read and write; a published session refuses
    operations inside its scripts (``forbidden``), not here, so presence still works."""

    name = KIND

    def __init__(self, patterns: PatternSessions) -> None:
        self._patterns = patterns

    def check_read(self, claims: Claims, meta: SessionMeta) -> None:
        """The unguessable id is the capability: holding it is enough."""

    def check_write(self, claims: Claims, meta: SessionMeta) -> None:
        """As for reading; immutability is checked atomically with each change."""

    async def snapshot(self, session_id: str) -> Snapshot | None:
        record, players, position = await self._patterns.snapshot(session_id)
        if record is None:
            return None
        session = full_view(record, orphaned=False, parent_name=await parent_name_now(self._patterns, record))
        return Snapshot(session=session, position=position, extra={"players": players})

    def owned_keys(self, session_id: str) -> list[str]:
        return self._patterns.owned_keys(session_id)

    async def on_delete(self, session_id: str, record: dict[str, str]) -> None:
        """Leave the parent's children index (the parent's slot); the remix count stays: it is history."""
        parent_id = record.get("remixed_from") or ""
        if parent_id:
            await self._patterns.forget_child(parent_id, session_id)

    def summary(self, record: dict[str, str]) -> dict[str, Any]:
        return {"title": record.get("name") or "Untitled pattern", "url": session_url(record.get("id", ""))}
