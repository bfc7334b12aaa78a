"""``subscribe_on_session`` / ``unsubscribe_from_session``: live events with recovery, any kind.

A subscriber that sends the ``(epoch, offset)`` it last saw receives exactly the events it
missed, in order, as ordinary events; when they are no longer in the log (or the epoch
changed) it receives a ``session_snapshot`` instead and the ack says ``recovered: false``.
Everything arrives before the ack, and live events follow without a gap or a duplicate.
The session's kind (``handlers.kinds``) decides who may read it and what its snapshot holds.
"""

from __future__ import annotations

from typing import Any

from handlers.admission import FairSlots, TurnGate
from handlers.connection import Connection
from handlers.context import Services
from handlers.kinds import SessionKind
from handlers.payloads import SessionRef, Subscribe, validate
from handlers.socket_router import SocketRouter
from protocol import wire_json
from protocol.errors import CodedError, ErrorCode
from protocol.events import SESSION_SNAPSHOT
from storage.events import Position

# Subscribes started per loop turn (handlers.admission): each costs Redis reads and a snapshot,
# and 10,000 clients reconnecting at once subscribe at once; the rest wait for the next turns.
SUBSCRIBES_PER_TURN = 8
CATCH_UPS_IN_FLIGHT = 16


# A catch-up larger than this is answered with a snapshot (``recovered: false``) instead.
REPLAY_MAX_BYTES = 256 * 1024


class SubscriptionEvents:
    """Handlers for joining and leaving a session's live event stream."""

    def __init__(self, services: Services) -> None:
        self._s = services
        self.admission = TurnGate(SUBSCRIBES_PER_TURN)
        # Catch-ups (Redis reads, a snapshot built and sent) under way at once: their Redis
        # replies arrive together, and each wakes its subscribe in the same loop turn. Taken
        # after the room is joined, so waiting for a room's SUBSCRIBE holds no place here.
        # Shared fairly (FairSlots): client addresses in turn, and within one the connection
        # that caught up least often first, so that a storm of subscribes from one connection
        # or one address (1,000 connections x 40 subscribes) does not hold everyone else's
        # subscribe behind all of it. A connection has one subscribe in flight at most: its
        # events are handled one after another (server.transport), the rest wait in its inbox.
        self._reading = FairSlots(CATCH_UPS_IN_FLIGHT)

    def register(self, router: SocketRouter) -> None:
        """Attach the events to ``router``."""
        router.on("subscribe_on_session", self.subscribe)
        router.on("unsubscribe_from_session", self.unsubscribe)

    async def subscribe(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """Join the session's room; replay or snapshot first (see the module docstring)."""
        request = validate(Subscribe, data)
        session_id = request.session_id
        await self.admission.enter()
        kind, _ = await self._s.kinds.readable(conn.claims, session_id, remembered=True)
        bus = self._s.bus
        mine = bus.sessions_of(conn.sid)
        if session_id not in mine and len(mine) >= self._s.limits.max_subscriptions:
            raise CodedError(ErrorCode.RATE_LIMITED, "too many subscriptions on one connection")
        await bus.open(session_id, conn.sid)
        try:
            rank = conn.catch_ups
            conn.catch_ups += 1
            async with self._reading.held(conn.address, rank):
                return await self._catch_up(conn, kind, request)
        except BaseException:
            bus.leave(session_id, conn.sid)
            raise

    async def _catch_up(self, conn: Connection, kind: SessionKind, request: Subscribe) -> dict[str, Any]:
        """The replay or the snapshot of a subscriber already in the room (joining)."""
        session_id = request.session_id
        bus = self._s.bus
        if request.epoch is not None and request.offset is not None:
            recovery = await self._s.log.read_after(
                session_id, request.epoch, request.offset, request.last_id, claimed=True
            )
            if recovery.recovered and sum(len(event.raw) for event in recovery.events) > REPLAY_MAX_BYTES:
                # A few whole states missed (a pattern replaced by PUT: up to 64 KiB each) are
                # more than the snapshot of the state that stands: asked again and again, a
                # 150-byte request pulled megabytes out of the node. The snapshot is sent instead.
                return await self._snapshot(conn, kind, session_id, recovered=False)
            if recovery.recovered:
                for event in recovery.events:
                    bus.send(conn.sid, event.type, event.raw)
                bus.go_live(session_id, conn.sid, recovery.position.offset)
                position = recovery.position
                return self._ack(session_id, position, True, len(recovery.events))
            if recovery.rolled_back:
                # Redis lost writes this client saw (its claim is sealed, see storage/events.py):
                # a new epoch, and a snapshot of what is. A claim without that evidence
                # costs only this client a snapshot.
                await self._s.log.reset_epoch(session_id, request.epoch)
        recovered = False if request.offset is not None else None
        return await self._snapshot(conn, kind, session_id, recovered=recovered)

    async def _snapshot(
        self, conn: Connection, kind: SessionKind, session_id: str, *, recovered: bool | None
    ) -> dict[str, Any]:
        snapshot = await kind.snapshot(session_id)
        if snapshot is None:
            raise CodedError(ErrorCode.SESSION_NOT_FOUND, "no such session")
        position = snapshot.position
        body = {
            **snapshot.extra,
            "session_id": session_id,
            "kind": kind.name,
            "epoch": position.epoch,
            "offset": position.offset,
            "last_id": position.last_id,
            "session": snapshot.session,
        }
        self._s.bus.send(conn.sid, SESSION_SNAPSHOT, wire_json.dumps(body))
        self._s.bus.go_live(session_id, conn.sid, position.offset)
        return self._ack(session_id, position, recovered, 0)

    @staticmethod
    def _ack(session_id: str, position: Position, recovered: bool | None, missed: int) -> dict[str, Any]:
        ack: dict[str, Any] = {
            "session_id": session_id,
            "epoch": position.epoch,
            "offset": position.offset,
            "last_id": position.last_id,
            "missed": missed,
        }
        if recovered is not None:
            ack["recovered"] = recovered
        return ack

    async def unsubscribe(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """Leave the session's room (not being subscribed is not an error)."""
        request = validate(SessionRef, data)
        was = self._s.bus.leave(request.session_id, conn.sid)
        return {"session_id": request.session_id, "was_subscribed": was}
