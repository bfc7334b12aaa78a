"""Registers Socket.IO events behind one guard: identity, rate, session id, payload, ack.

Every event gets an ack: ``{"ok": true, ...}`` from the handler's result, or
``{"ok": false, "error": code, "message": ...}`` from the exception it raised. Checks run in the
order of seed 002: ``invalid_session_id`` -> ``unauthorized`` -> ``session_not_found`` ->
``forbidden`` (the last two inside the handlers, where the session is loaded).

Being the one place every event passes, the guard also counts it (``handlers.metrics``: by
registered name and outcome, with its ack time) and logs its line (``handlers.socket_log``).

Events of one connection arrive here one after another, in the order sent, and a handler's
ack is handed to its connection before the handler's task next yields to the loop: both are
the transport's contract (``server.transport.contract``), kept by either of its lanes. An event
registered with ``changes=True`` holds its session's local fan-out until its ack is on its way
(``Subscriptions.hold``): the release is scheduled with ``call_soon`` from the handler, so it
runs after the ack was handed over, and the fan-out it lets go queues behind that ack.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from handlers.connection import Connection, Connections
from handlers.context import Services
from handlers.errors import to_ack
from handlers.ids import parse_session_id
from handlers.metrics import CANCELLED, OK, UNKNOWN, EventMeter
from handlers.socket_log import SocketEventLog
from protocol.errors import CodedError, ErrorCode

log = logging.getLogger(__name__)

Handler = Callable[[Connection, dict[str, Any]], Awaitable[dict[str, Any]]]


def _with_seq(ack: dict[str, Any], data: Any) -> dict[str, Any]:
    """An error ack names the request's ``seq`` (a whole number) whatever refused it, the rate
    limit included, so a client matching acks by sequence number knows which one failed."""
    seq = data.get("seq") if isinstance(data, dict) else None
    if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq <= 2**53 and "seq" not in ack:
        return {**ack, "seq": seq}
    return ack


class EventRegistry(Protocol):
    """What the router needs of the Socket.IO server (``server.transport.contract.SocketServer``)."""

    def on(self, event: str, handler: Callable[..., Any]) -> None:
        """Register ``handler`` for ``event`` (``"*"``: every event without one)."""
        ...


class SocketRouter:
    """Guards and registers event handlers on one Socket.IO server."""

    def __init__(self, sio: EventRegistry, services: Services, connections: Connections) -> None:
        self._sio = sio
        self._services = services
        self._connections = connections
        self._event_log = SocketEventLog()
        self._unknown_meter = services.metrics.unknown_event()
        sio.on("*", self._unknown)

    def on(self, event: str, handler: Handler, *, session_scoped: bool = True, changes: bool = False) -> None:
        """Register ``handler`` for ``event``.

        ``session_scoped`` checks ``session_id`` first; ``changes`` marks an event that appends
        to that session's log (its ack must not trail its fan-out).
        """
        bus = self._services.bus
        metrics = self._services.metrics
        meter = metrics.event(event)

        async def guarded(sid: str, data: Any = None, *extra: Any) -> dict[str, Any]:
            started = time.perf_counter()
            hold: object | None = None
            session_id = ""
            outcome = CANCELLED  # unless it returns or raises: the server is stopping
            try:
                connection = self._admit(sid)
                payload = self._payload(data, extra, session_scoped)
                if session_scoped:  # parsed; an unscoped event's field is the client's, unchecked
                    session_id = payload["session_id"]
                self._check_token(connection)
                if changes:
                    session_id = payload["session_id"]
                    hold = bus.hold(session_id)
                result = await handler(connection, payload)
                outcome = OK
                if session_id:
                    self._services.sessions.used(session_id)  # every use is an access (seed 001)
                return {"ok": True, **result}
            except Exception as exc:  # every failure becomes an ack, never a stack trace
                ack = to_ack(exc, metrics=metrics)
                outcome = ack["error"]
                return _with_seq(ack, data)
            finally:
                if hold is not None:
                    # After the ack: the transport hands it over before this task yields again.
                    asyncio.get_running_loop().call_soon(bus.release, session_id, hold)
                self._done(meter, event, sid, session_id, outcome, started)

        self._sio.on(event, guarded)

    def _done(self, meter: EventMeter, event: str, sid: str, session_id: str, outcome: str, started: float) -> None:
        elapsed_s = time.perf_counter() - started
        meter.done(outcome, elapsed_s)
        if self._event_log.enabled():
            self._event_log.write(event, sid, session_id, outcome, elapsed_s)

    def _admit(self, sid: str) -> Connection:
        connection = self._connections.get(sid)
        if connection is None:
            raise CodedError(ErrorCode.UNAUTHORIZED, "not connected")
        if not connection.bucket.take(self._services.clock.monotonic_s()):
            raise CodedError(ErrorCode.RATE_LIMITED, "too many events; slow down")
        return connection

    @staticmethod
    def _payload(data: Any, extra: tuple[Any, ...], session_scoped: bool) -> dict[str, Any]:
        if data is None and not session_scoped:
            data = {}
        # A missing or null payload is not one JSON object: invalid_payload, before the id.
        if extra or not isinstance(data, dict):
            raise CodedError(ErrorCode.INVALID_PAYLOAD, "the payload must be one JSON object")
        # Seed 002: a client-sent telegram_user_id is ignored (the token's is the one used),
        # not refused as an unknown field.
        data = {k: v for k, v in data.items() if k != "telegram_user_id"}
        if session_scoped:
            data = {**data, "session_id": parse_session_id(data.get("session_id"))}
        checked: dict[str, Any] = data
        return checked

    def _check_token(self, connection: Connection) -> None:
        if connection.claims.exp <= self._services.clock.now_s():
            raise CodedError(ErrorCode.UNAUTHORIZED, "token expired; reconnect with a fresh token")

    async def _unknown(self, event: str, sid: str, *args: Any) -> dict[str, Any]:
        # A client picks the name: counted and logged as "unknown", never as a label of its own.
        self._done(self._unknown_meter, UNKNOWN, sid, "", ErrorCode.UNKNOWN_EVENT.value, time.perf_counter())
        return to_ack(CodedError(ErrorCode.UNKNOWN_EVENT, f"unknown event {event[:64]!r}"))
