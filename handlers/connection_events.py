"""Socket.IO ``connect`` / ``disconnect``: the JWT decides who a connection is."""

from __future__ import annotations

import logging
from typing import Any

import socketio
from socketio.exceptions import ConnectionRefusedError as Refused

from handlers.connection import Budget, Connection, Connections, FloodCount, TokenBucket
from handlers.context import Services
from handlers.http_common import client_address
from protocol.errors import CodedError, ErrorCode

log = logging.getLogger(__name__)


class ConnectionEvents:
    """Authenticates connections from ``auth.token`` and cleans up after them."""

    def __init__(self, services: Services, connections: Connections) -> None:
        self._s = services
        self._connections = connections

    def register(self, sio: socketio.AsyncServer) -> None:
        """Attach the handlers to ``sio``."""
        sio.on("connect", self.connect)
        sio.on("disconnect", self.disconnect)

    async def connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        """Refuse with ``connect_error`` data ``{error: "unauthorized"}`` unless the token verifies."""
        token = auth.get("token") if isinstance(auth, dict) else None
        await self._s.tokens.learn_key(token)  # an external token signed with a key rotated in
        try:
            claims = self._s.tokens.verify(token)
            if claims.exp <= self._s.clock.now_s():
                raise CodedError(ErrorCode.UNAUTHORIZED, "token expired")
        except CodedError as exc:
            # One line and a count: a refused connect is otherwise invisible to an operator.
            self._s.metrics.refused("unauthorized")
            log.info("refused a Socket.IO connection: unauthorized (%s)", exc.message, extra={"sid": sid})
            raise Refused("unauthorized", {"error": "unauthorized", "message": exc.message}) from None
        budget = Budget.of(environ, self._new_budget)
        connection = Connection(
            sid=sid,
            claims=claims,
            bucket=budget.bucket,
            address=self._address(environ),
            flood=budget.flood,
            client_ids=budget.client_ids,
        )
        self._connections.add(connection)
        self._s.metrics.connected()

    def _new_budget(self) -> Budget:
        limits = self._s.limits
        return Budget(
            TokenBucket(limits.event_rate_per_s, limits.event_burst),
            FloodCount(limits.flood_refusals, limits.flood_window_s),
        )

    def _address(self, environ: dict[str, Any]) -> str:
        # A handshake answered by the transport's front carries the address it counted; the
        # others have their aiohttp request.
        front: Any = environ.get("sessionhub.front_address")
        if isinstance(front, str):
            return front
        request = environ.get("aiohttp.request")
        if request is None:
            return str(environ.get("REMOTE_ADDR") or "")
        return client_address(request, trust_forwarded_for=self._s.trust_forwarded_for)

    async def disconnect(self, sid: str, reason: Any = None) -> None:
        """Leave every room, forget the connection, then undo what it left behind: its presence
        in pattern sessions (the server saw it go, so the others see it leave now, not after
        the presence TTL) and the recording lease it held."""
        self._s.bus.leave_all(sid)
        connection = self._connections.get(sid)
        if self._connections.remove(sid):  # a refused connection was never counted
            # A cut decided here (a flood) is counted under its own reason, not "server disconnect".
            self._s.metrics.disconnected(connection.cut if connection and connection.cut else str(reason or ""))
        for name, farewell in connection.farewells.items() if connection else ():
            try:
                await farewell()
            except CodedError as exc:
                # A session deleted meanwhile (by its owner, an operator) has nothing left to undo.
                gone = exc.code is ErrorCode.SESSION_NOT_FOUND
                log.log(logging.DEBUG if gone else logging.WARNING, "farewell %s of %s: %s", name, sid, exc)
            except Exception:  # one failed farewell must not keep the others; the TTL still ends it
                log.warning("farewell %s of %s failed", name, sid, exc_info=True)
