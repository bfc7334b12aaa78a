"""Listening Socket.IO events: find the history, report, upload, delete, clear.

Every changing event names the caller's history session (``session_id``, from
``listening_history``) so that its ack leaves before its fan-out (``changes=True``); the
scripts refuse any history but the caller's own.
"""

from __future__ import annotations

from typing import Any

from handlers.connection import Connection
from handlers.listening import actions
from handlers.listening.day_cap import GuestDayCap
from handlers.listening.payloads import ClearEvent, DeleteEvent, ReportEvent, UploadEvent
from handlers.payloads import validate
from handlers.socket_router import SocketRouter
from protocol.errors import CodedError, ErrorCode
from storage.clock import Clock
from storage.listening.repository import ListeningHistories


class ListeningEvents:
    """Handlers of the listening events; each checks access on every call."""

    def __init__(self, histories: ListeningHistories, clock: Clock, cap: GuestDayCap) -> None:
        self._histories = histories
        self._clock = clock
        self._cap = cap

    def register(self, router: SocketRouter) -> None:
        """Attach the events to ``router``."""
        router.on("listening_history", self.history, session_scoped=False)
        router.on("listening_report", self.report, changes=True)
        router.on("listening_upload", self.upload, changes=True)
        router.on("listening_delete", self.delete, changes=True)
        router.on("listening_clear", self.clear, changes=True)

    async def history(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """The caller's history session id (created on first use); takes no fields."""
        if data:
            raise CodedError(ErrorCode.INVALID_PAYLOAD, "listening_history takes no fields")
        actions.require_history_read(conn.claims)
        return {"session_id": await self._histories.ensure(conn.claims.sub)}

    async def report(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """A player's status report."""
        body = validate(ReportEvent, data)
        return await actions.report(self._histories, self._cap, conn.claims, conn.address, body.session_id, body)

    async def upload(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """An offline player's finished session."""
        body = validate(UploadEvent, data)
        return await actions.upload(
            self._histories, self._cap, self._clock, conn.claims, conn.address, body.session_id, body
        )

    async def delete(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """Delete one listening session."""
        body = validate(DeleteEvent, data)
        return await actions.delete(self._histories, conn.claims, body.session_id, body.id)

    async def clear(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """Delete the whole history (``confirm: true``)."""
        body = validate(ClearEvent, data)
        return await actions.clear(self._histories, conn.claims, body.session_id, body)
