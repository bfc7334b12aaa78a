"""Listening histories in the kind registry: owner-only, readable with ``read_all`` too."""

from __future__ import annotations

from typing import Any

from auth.access import require_read
from auth.claims import Claims
from handlers.kinds import SessionKind, Snapshot
from handlers.listening.actions import HISTORY_URL, may_write
from protocol.errors import CodedError, ErrorCode
from storage.listening.repository import ListeningHistories
from storage.listening.model import KIND
from storage.sessions import SessionMeta


class ListeningKind(SessionKind):
    """A user's listening history: only its owner reports to it; ``read_all`` may watch it."""

    name = KIND

    def __init__(self, histories: ListeningHistories) -> None:
        self._histories = histories

    def check_read(self, claims: Claims, meta: SessionMeta) -> None:
        require_read(claims, meta.owner_id)

    def check_write(self, claims: Claims, meta: SessionMeta) -> None:
        if claims.sub != meta.owner_id or not may_write(claims):
            raise CodedError(ErrorCode.FORBIDDEN, "only the owner reports to a listening history")

    async def snapshot(self, session_id: str) -> Snapshot | None:
        history, position = await self._histories.snapshot(session_id)
        if history is None:
            return None
        # The sessions playing now show their items' titles, as every other answer does.
        meta = await self._histories.metadata(session_id, [s.item_id for s in history.open])
        session = {
            "session_id": session_id,
            "owner_id": history.record.get("owner_id", ""),
            "created_at": int(history.record.get("created_at") or 0),
            "total_ms": history.total_ms,
            "count": history.count,
            "open": [s.public(meta.get(s.item_id)) for s in history.open],
            "url": HISTORY_URL,
        }
        return Snapshot(session=session, position=position)

    def owned_keys(self, session_id: str) -> list[str]:
        return self._histories.owned_keys(session_id)

    async def on_delete(self, session_id: str, record: dict[str, str]) -> None:
        """The owner's pointer to this history and its place in the sweeper's queue."""
        await self._histories.forget(session_id, owner_id=record.get("owner_id", ""))

    def summary(self, record: dict[str, str]) -> dict[str, Any]:
        return {"title": "Listening history", "url": HISTORY_URL}
