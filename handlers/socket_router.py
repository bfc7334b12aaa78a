"""Registers Socket.IO events behind one guard: identity, rate, session id, payload, ack.

Every event gets an ack: ``{"ok": true, ...}`` from the handler's result, or
``{"ok": false, "error": code, "message": ...}`` from the exception it raised. Checks run in the
order of seed 002: ``invalid_session_id`` -> ``unauthorized`` -> ``session_not_found`` ->
``forbidden`` (the last two inside the handlers, where the session is loaded).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio

from handlers.connection import Connection, Connections
from handlers.context import Services
from handlers.errors import ProtocolError, error_ack, to_ack
from handlers.ids import parse_session_id

log = logging.getLogger(__name__)

Handler = Callable[[Connection, dict[str, Any]], Awaitable[dict[str, Any]]]


class SocketRouter:
    """Guards and registers event handlers on one Socket.IO server."""

    def __init__(self, sio: socketio.AsyncServer, services: Services, connections: Connections) -> None:
        self._sio = sio
        self._services = services
        self._connections = connections
        sio.on("*", self._unknown)

    def on(self, event: str, handler: Handler, *, session_scoped: bool = True) -> None:
        """Register ``handler`` for ``event``; ``session_scoped`` checks ``session_id`` first."""

        async def guarded(sid: str, data: Any = None, *extra: Any) -> dict[str, Any]:
            try:
                connection = self._admit(sid)
                payload = self._payload(data, extra, session_scoped)
                self._check_token(connection)
                result = await handler(connection, payload)
                return {"ok": True, **result}
            except Exception as exc:  # every failure becomes an ack, never a stack trace
                return to_ack(exc)

        self._sio.on(event, guarded)

    def _admit(self, sid: str) -> Connection:
        connection = self._connections.get(sid)
        if connection is None:
            raise ProtocolError("unauthorized", "not connected")
        if not connection.bucket.take(self._services.clock.monotonic_s()):
            raise ProtocolError("rate_limited", "too many events; slow down")
        return connection

    @staticmethod
    def _payload(data: Any, extra: tuple[Any, ...], session_scoped: bool) -> dict[str, Any]:
        if data is None:
            data = {}
        if extra or not isinstance(data, dict):
            raise ProtocolError("invalid_payload", "the payload must be one JSON object")
        if session_scoped:
            data = {**data, "session_id": parse_session_id(data.get("session_id"))}
        return data

    def _check_token(self, connection: Connection) -> None:
        if connection.claims.exp <= self._services.clock.now_s():
            raise ProtocolError("unauthorized", "token expired; reconnect with a fresh token")

    async def _unknown(self, event: str, sid: str, *args: Any) -> dict[str, Any]:
        return error_ack("unknown_event", f"unknown event {event[:64]!r}")
