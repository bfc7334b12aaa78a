"""Stream sessions in the kind registry: the link is the read capability, the owner writes."""

from __future__ import annotations

from typing import Any

from auth.claims import Claims
from handlers.streams.actions import streamer_url, viewer_url
from handlers.context import Services
from handlers.kinds import SessionKind, Snapshot
from protocol.errors import CodedError, ErrorCode
from storage.streams.repository import KIND, StreamSessions
from storage.streams.audience import AUDIENCE_KIND
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

    def owned_keys(self, session_id: str) -> list[str]:
        return self._streams.owned_keys(session_id)

    async def on_delete(self, session_id: str, record: dict[str, str]) -> None:
        """The owner's stream list and the audience session that viewer pages follow."""
        await self._streams.forget(session_id, record)

    def summary(self, record: dict[str, str]) -> dict[str, Any]:
        return {
            "title": record.get("title") or "Untitled stream",
            "url": streamer_url(self._s, record.get("id", "")),
            "status": record.get("state", ""),
        }


class StreamAudienceKind(SessionKind):
    """The audience of a stream session (``storage.streams.audience``): what viewer pages follow.

    Readable by any valid token, like the stream; nobody writes it but the stream's own steps.
    """

    name = AUDIENCE_KIND

    def __init__(self, streams: StreamSessions) -> None:
        self._streams = streams

    def check_read(self, claims: Claims, meta: SessionMeta) -> None:
        """The stream's link is the capability, as for the stream itself."""

    def check_write(self, claims: Claims, meta: SessionMeta) -> None:
        raise CodedError(ErrorCode.FORBIDDEN, "an audience session changes with its stream only")

    async def snapshot(self, session_id: str) -> Snapshot | None:
        # The position first, then the stream: a state change is copied here after it is made
        # on the stream, so the stream read afterwards is never older than this position.
        stream_id, position = await self._streams.audiences.position_and_stream(session_id)
        stream = await self._streams.get(stream_id) if stream_id else None
        if stream is None:
            return None
        open_segment = stream.segments[-1]["index"] if stream.state == "active" and stream.segments else 0
        session = {
            "session_id": session_id,
            "stream_id": stream.id,
            "title": stream.title,
            "game": stream.game,
            "viewer_delay_s": stream.viewer_delay_s,
            "state": stream.state,
            "segment_index": open_segment,
        }
        return Snapshot(session=session, position=position)

    def summary(self, record: dict[str, str]) -> dict[str, Any]:
        return {
            "title": "Stream audience",
            "url": f"/watch/{record.get('stream_id', '')}",
            "status": record.get("state", ""),
        }
