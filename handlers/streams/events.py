"""Stream-session Socket.IO events: state actions, clip submissions and the owner's review."""

from __future__ import annotations

from typing import Any

from handlers.streams.actions import clear_viewer, performer, set_blocked, set_state, submit_clip
from handlers.streams.payloads import (
    ClipEditEvent,
    ClipEvent,
    ClipRef,
    StateEvent,
    ViewerBlockEvent,
    ViewerClearEvent,
)
from handlers.streams.day_cap import ClipsDayCap
from handlers.streams.settings import ClipSettings
from handlers.connection import Connection
from handlers.payloads import validate
from handlers.socket_router import SocketRouter
from storage.streams.repository import StreamSessions


class StreamEvents:
    """Every event here appends to the session's log (``changes=True``: ack before fan-out)."""

    def __init__(self, streams: StreamSessions, settings: ClipSettings, day_cap: ClipsDayCap) -> None:
        self._streams = streams
        self._settings = settings
        self._day_cap = day_cap

    def register(self, router: SocketRouter) -> None:
        """Attach the events to ``router``."""
        router.on("stream_set_state", self.set_state, changes=True)
        router.on("clip_submit", self.submit, changes=True)
        router.on("clip_update", self.update, changes=True)
        router.on("clip_delete", self.delete, changes=True)
        router.on("stream_block_viewer", self.block, changes=True)
        router.on("clip_clear_viewer", self.clear, changes=True)

    async def set_state(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """start / pause / resume / end, by the owner."""
        request = validate(StateEvent, data)
        return await set_state(self._streams, conn.claims, request.session_id, request.action)

    async def submit(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """A viewer's Clip Moment."""
        request = validate(ClipEvent, data)
        return await submit_clip(
            self._streams,
            self._settings,
            conn.claims,
            request.session_id,
            note=request.note,
            submission_id=request.submission_id,
            pressed_ago_ms=request.pressed_ago_ms,
            address=conn.address,
            day_cap=self._day_cap,
        )

    async def update(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """Mark clipped / unclipped or edit the note, by the owner."""
        request = validate(ClipEditEvent, data)
        acting = await performer(self._streams, conn.claims, request.session_id)
        clip = await self._streams.update_clip(
            request.session_id, request.clip_id, acting, clipped=request.clipped, note=request.note
        )
        return {"session_id": request.session_id, "clip": clip.for_owner()}

    async def delete(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """Delete a clip, by the owner."""
        request = validate(ClipRef, data)
        acting = await performer(self._streams, conn.claims, request.session_id)
        clip = await self._streams.delete_clip(request.session_id, request.clip_id, acting)
        return {"session_id": request.session_id, "clip_id": clip.clip_id, "deleted": True}

    async def block(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """Block (or unblock) a viewer from clipping, by the owner."""
        request = validate(ViewerBlockEvent, data)
        return await set_blocked(
            self._streams, conn.claims, request.session_id, request.user_id, blocked=request.blocked
        )

    async def clear(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """Remove every clip of one viewer, by the owner."""
        request = validate(ViewerClearEvent, data)
        return await clear_viewer(self._streams, conn.claims, request.session_id, request.user_id)
