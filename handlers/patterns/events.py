"""Live co-editing over Socket.IO: operations, and players joining, moving and leaving.

Every event here appends to the session's log (``changes=True``): its ack leaves before its
fan-out, and the sender recognises its own operation in the fan-out by ``client`` (its socket
id) and ``seq`` (its own sequence number).
"""

from __future__ import annotations

import json
from functools import partial
from typing import Annotated, Any

from pydantic import Field

from handlers.connection import Connection
from handlers.context import Services
from handlers.patterns.config import PatternConfig
from handlers.patterns.ops import Op, stored, wire
from handlers.patterns.state import StepIndex, Strict, TrackId, bounded_text
from handlers.payloads import SessionRef, validate
from handlers.socket_router import SocketRouter
from protocol.errors import CodedError, ErrorCode
from storage.identity.repository import MAX_NAME_CHARS
from storage.patterns.repository import OpSender, PatternSessions

# A player is named as their account is (60 characters as seen): presence took 32 code points, and
# a person whose account name was longer was refused at every join, an editor nobody saw listed
# (audit "patternworld").
PlayerName = bounded_text(MAX_NAME_CHARS)
# Distinct op client_id values one connection may use (a page keeps one for its life; each is an
# hour-long key in Redis, so one per op would be a key per op).
CLIENT_IDS_PER_CONNECTION = 4
# The name of a pattern player's farewell on its connection (Connection.farewells), before the session id.
PRESENCE_FAREWELL = "pattern:"
Colour = Annotated[str, Field(strict=True, pattern=r"^#[0-9a-fA-F]{6}$")]

# Refusals of the scripts, told in words (the scripts return only the code).
_MESSAGES = {
    ErrorCode.FORBIDDEN: "this session is published and cannot be edited; remix it",
    ErrorCode.NOT_FOUND: "no track with that id (it may have been deleted)",
    ErrorCode.CONFLICT: "a track with that id already exists",
    ErrorCode.LIMIT_REACHED: "a pattern holds at most 16 tracks",
    ErrorCode.SESSION_NOT_FOUND: "no such pattern session",
    ErrorCode.SESSION_FULL: "the session is full: its present players edit, you can watch",
    ErrorCode.PAYLOAD_TOO_LARGE: "the pattern would outgrow what a save may hold",
}


class OpRequest(SessionRef):
    """``pattern_op``."""

    seq: int = Field(ge=0, le=2**53)
    op: Op
    # With seq, an op's identity: a retry with both is answered, not applied again (across
    # connections too). Without it the connection's id stands in (retries on one connection).
    client_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_\-]{8,64}$")


class JoinRequest(SessionRef):
    """``pattern_join``."""

    name: PlayerName  # type: ignore[valid-type]
    colour: Colour
    # The player id this client had before a reconnect: that entry goes if it is the same user's.
    replaces: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_\-]{1,64}$")


class Cursor(Strict):
    trackId: TrackId
    step: StepIndex


class CursorRequest(SessionRef):
    """``pattern_cursor``: where the player points (null: nowhere)."""

    cursor: Cursor | None


def _worded(exc: CodedError, **details: Any) -> CodedError:
    message = _MESSAGES.get(exc.code, exc.message) if exc.message == exc.code.value else exc.message
    return CodedError(exc.code, message, **{**exc.details, **details})


class PatternEvents:
    """``pattern_op``, ``pattern_join``, ``pattern_cursor``, ``pattern_heartbeat``, ``pattern_leave``."""

    def __init__(self, services: Services, patterns: PatternSessions, config: PatternConfig) -> None:
        self._s = services
        self._patterns = patterns
        self._config = config

    def register(self, router: SocketRouter) -> None:
        """Attach the events to ``router``."""
        # An editor's ops, cursor moves and beats may be pipelined: the one write of each is its
        # script (protocol.order).
        router.on("pattern_op", self.op, changes=True, pipelined=True)
        router.on("pattern_join", self.join, changes=True)
        router.on("pattern_cursor", self.cursor, changes=True, pipelined=True)
        router.on("pattern_heartbeat", self.heartbeat, changes=True, pipelined=True)
        router.on("pattern_leave", self.leave, changes=True)

    async def op(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """Apply one operation; the ack and the event carry the sender's ``seq``."""
        request = validate(OpRequest, data)
        if request.client_id is not None and request.client_id not in conn.client_ids:
            if len(conn.client_ids) >= CLIENT_IDS_PER_CONNECTION:
                # A page keeps one for its life; a new one per op left a key per op in Redis.
                message = f"a connection may use at most {CLIENT_IDS_PER_CONNECTION} client_id values"
                raise _worded(CodedError(ErrorCode.INVALID_PAYLOAD, message), seq=request.seq)
            conn.client_ids.add(request.client_id)
        event = {"seq": request.seq, "client": conn.sid, "by": conn.claims.sub, "op": wire(request.op)}
        sender = OpSender(
            # A client's id is its user's: another player sending it (with a huge seq) made every
            # later op of that page a "duplicate", answered ok and never applied.
            client_id=f"user.{conn.claims.sub}/{request.client_id}" if request.client_id else f"sid.{conn.sid}",
            legacy_client_id=request.client_id or "",
            player_id=conn.sid,
            seq=request.seq,
            max_players=self._config.max_players,
            max_state_bytes=self._config.max_state_bytes,
        )
        try:
            applied = await self._patterns.apply(
                request.session_id, stored(request.op), event=event, max_tracks=16, sender=sender
            )
        except CodedError as exc:
            raise _worded(exc, seq=request.seq) from None
        ack = {"session_id": request.session_id, "seq": request.seq, "duplicate": applied.duplicate}
        return {**ack, "epoch": applied.position.epoch, "offset": applied.position.offset}

    async def join(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """Be present with a name and colour (``session_full`` past the limit: watch instead)."""
        request = validate(JoinRequest, data)
        farewell = f"{PRESENCE_FAREWELL}{request.session_id}"
        if farewell not in conn.farewells:
            present_in = sum(1 for name in conn.farewells if name.startswith(PRESENCE_FAREWELL))
            limit = self._s.limits.max_subscriptions
            if present_in >= limit:
                # One connection was present in as many sessions as it named: a player each in
                # Redis, a join in each log, and a leave each to run when it closed.
                message = f"a connection may be present in at most {limit} pattern sessions; leave one first"
                raise CodedError(ErrorCode.LIMIT_REACHED, message, limit=limit)
        player = {"id": conn.sid, "user": conn.claims.sub, "name": request.name or "Guest", "colour": request.colour}
        try:
            presence = await self._patterns.presence(
                request.session_id,
                "join",
                conn.sid,
                payload=json.dumps(player),
                ttl_ms=self._config.presence_ttl_s * 1000,
                max_players=self._config.max_players,
                replaces=request.replaces or "",
                places_per_user=self._config.places_per_user,
            )
        except CodedError as exc:
            if exc.code is ErrorCode.SESSION_FULL:
                message = f"at most {self._config.max_players} players; you can still watch"
                raise CodedError(exc.code, message, **exc.details) from None  # retry_after_s kept
            if exc.code is ErrorCode.LIMIT_REACHED:
                places = self._config.places_per_user
                message = f"you play here from {places} tabs or devices already; this one can still watch"
                raise CodedError(exc.code, message, **exc.details) from None  # limit kept
            raise _worded(exc) from None
        # The socket closing is a leave: the others see this player go at once, not after the TTL.
        conn.farewells[farewell] = partial(self._patterns.presence, request.session_id, "leave", conn.sid)
        return {"session_id": request.session_id, "player_id": conn.sid, "present": presence.present}

    async def cursor(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """Move the cursor; moves closer together than the interval are not logged (``throttled``)."""
        request = validate(CursorRequest, data)
        cursor = request.cursor.model_dump() if request.cursor else None
        presence = await self._beat(request.session_id, conn.sid, json.dumps(cursor))
        return {"session_id": request.session_id, "throttled": presence.offset == 0}

    async def heartbeat(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """Stay present (players that stop beating expire after the presence TTL)."""
        request = validate(SessionRef, data)
        presence = await self._beat(request.session_id, conn.sid, "")
        return {"session_id": request.session_id, "present": presence.present}

    async def leave(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """Stop being present (not being present is not an error)."""
        request = validate(SessionRef, data)
        conn.farewells.pop(f"{PRESENCE_FAREWELL}{request.session_id}", None)
        try:
            presence = await self._patterns.presence(request.session_id, "leave", conn.sid)
        except CodedError as exc:
            raise _worded(exc) from None
        return {"session_id": request.session_id, "was_present": presence.offset > 0}

    async def _beat(self, session_id: str, player_id: str, cursor_json: str) -> Any:
        try:
            return await self._patterns.presence(
                session_id,
                "beat",
                player_id,
                payload=cursor_json,
                ttl_ms=self._config.presence_ttl_s * 1000,
                cursor_interval_ms=self._config.cursor_interval_ms,
            )
        except CodedError as exc:
            if exc.code is ErrorCode.NOT_FOUND:
                raise CodedError(exc.code, "not present in this session; join first") from None
            raise _worded(exc) from None
