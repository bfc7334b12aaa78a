"""Stream sessions in the kind registry: the link is the read capability, the owner writes."""

from __future__ import annotations

from typing import Any

from auth.claims import Claims
from handlers.clips.actions import streamer_url, viewer_url
from handlers.context import Services
from handlers.kinds import SessionKind, Snapshot
from protocol.errors import CodedError, ErrorCode
from storage.clips import KIND, StreamSessions
from storage.sessions import SessionMeta


class StreamKind(SessionKind):
    """Anyone with a valid token and the session id may subscribe; only the owner changes it."""

    name = KIND

    def __init__(self, services: Services, streams: StreamSessions) -> None:
        self._s = services
        self._streams = streams

    def check_read(self, claims: Claims, meta: SessionMeta) -> None:
        """The unguessable id is the viewer's capability: a valid token is all it takes."""

    def check_write(self, claims: Claims, meta: SessionMeta) -> None:
        if claims.sub != meta.owner_id:
            raise CodedError(ErrorCode.FORBIDDEN, "only the streamer may change this session")

    async def snapshot(self, session_id: str) -> Snapshot | None:
        session, position = await self._streams.snapshot(session_id)
        if session is None:
            return None
        return Snapshot(session={**session.public(), "viewer_url": viewer_url(self._s, session_id)}, position=position)

    def summary(self, record: dict[str, str]) -> dict[str, Any]:
        return {
            "title": record.get("title") or "Untitled stream",
            "url": streamer_url(self._s, record.get("id", "")),
            "status": record.get("state", ""),
        }
