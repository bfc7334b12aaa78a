"""Registers Socket.IO events behind one guard: identity, rate, session id, payload, ack.

Every event gets an ack: ``{"ok": true, ...}`` from the handler's result, or
``{"ok": false, "error": code, "message": ...}`` from the exception it raised. Checks run in the
order of seed 002: ``invalid_session_id`` -> ``unauthorized`` -> ``session_not_found`` ->
``forbidden`` (the last two inside the handlers, where the session is loaded).

Being the one place every event passes, the guard also counts it (``handlers.metrics``: by
registered name and outcome, with its ack time) and logs its line (``handlers.socket_log``).

Refusing is cheap (issue 20, finding 4): an event over the connection's rate -- unknown event
names included -- is answered from a prebuilt ack before anything else is looked at (no payload
check, no pydantic, no Redis), and a connection refused ``SESSIONHUB_FLOOD_REFUSALS`` times within
``SESSIONHUB_FLOOD_WINDOW_S`` is cut: told with a ``protocol_error`` event (``reason: "flood"``),
then disconnected through python-socketio's public ``disconnect`` (either lane), its disconnect
counted as ``flood``. Not only events: a lane that can (:class:`MessageCharging`, the fast lane)
has every other message a client sends -- malformed, oversize, a reserved name, a CONNECT or ACK it
did not need, an Engine.IO packet beyond the protocol's own -- spend a token of the same bucket
(:meth:`SocketRouter.charge`), so a flood of them is refused and cut as a flood of events is.

Events of one connection arrive here one after another, in the order sent, and a handler's
ack is handed to its connection before the handler's task next yields to the loop: both are
the transport's contract (``server.transport.contract``), kept by either of its lanes. An event
registered with ``changes=True`` holds its session's local fan-out until its ack is on its way
(``Subscriptions.hold``): the release is scheduled with ``call_soon`` from the handler, so it
runs after the ack was handed over, and the fan-out it lets go queues behind that ack. An event
registered with ``pipelined=True`` may instead start while the earlier ones of its connection
still wait for Redis (``protocol.order``): its release is handed to ``protocol.order.after_ack``,
which the transport runs once it has written the ack. A pipelined change registered with a
``submit`` is, where the transport can, guarded without a task (:meth:`SocketRouter._submit`):
the same checks, the commit sent at once, and the guard's end (the ack, the count, the log line,
the release) run from the commit's reply; anything the guard or the handler would refuse, or a
change the handler must await, goes the usual way.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from handlers.connection import Connection, Connections
from handlers.context import Services
from handlers.errors import to_ack
from handlers.ids import parse_session_id
from handlers.metrics import CANCELLED, OK, UNKNOWN, EventMeter
from handlers.socket_log import SocketEventLog
from protocol.errors import CodedError, ErrorCode, with_seq
from protocol.order import Answered, after_ack
from protocol.events import PROTOCOL_ERROR

log = logging.getLogger(__name__)

Handler = Callable[[Connection, dict[str, Any]], Awaitable[dict[str, Any]]]

# The ack of an event over the connection's rate, built once: a flood is refused with a copy.
_RATE_LIMITED = {"ok": False, "error": ErrorCode.RATE_LIMITED.value, "message": "too many events; slow down"}
# A refusal whose connection is gone says a second (its next event is answered unauthorized).
_RATE_WAIT_S = 1.0
# The ack of an event that arrives once the server is stopping (:meth:`SocketRouter.stop_taking`):
# nothing was done, and the same event sent to another node (or this one restarted) is safe.
_STOPPING = {
    "ok": False,
    "error": ErrorCode.UNAVAILABLE.value,
    "message": "the server is stopping; reconnect and send it again",
}
# The disconnect reason of a connection cut for flooding (handlers.metrics.CLOSE_REASONS).
FLOOD = "flood"
# What a cut connection is told before it is disconnected (a protocol_error event).
_FLOOD_NOTICE = {
    "ok": False,
    "error": ErrorCode.RATE_LIMITED.value,
    "reason": FLOOD,
    "message": "too many events over the rate for too long; disconnected",
}
# How long a long-polling connection being cut has to poll its last acks and the notice: a
# client polls again as soon as a poll is answered; one that polls no more loses them.
CUT_FLUSH_S = 5.0


def _rate_limited(connection: Connection | None, data: Any) -> dict[str, Any]:
    """The ``rate_limited`` ack of an event over its connection's rate: when its next token comes."""
    wait_s = connection.bucket.wait_s() if connection is not None else _RATE_WAIT_S
    return with_seq({**_RATE_LIMITED, "retry_after_s": wait_s}, data)


class EventRegistry(Protocol):
    """What the router needs of the Socket.IO server (``server.transport.contract.SocketServer``)."""

    def on(self, event: str, handler: Callable[..., Any]) -> None:
        """Register ``handler`` for ``event`` (``"*"``: every event without one)."""
        ...

    def screen_rate(self, over_rate: Callable[[str], bool], refuse: Callable[[str, str, Any], dict[str, Any]]) -> None:
        """Have events over the rate refused before they are dispatched (a lane may instead
        leave every event to its handler's guard)."""
        ...

    def pipeline(self, event: str, commit: Callable[[str, Any, bool], Any] | None = None) -> None:
        """Let a connection's ``event`` messages start while its earlier ones are handled
        (``protocol.order``; a lane may handle them one after another all the same), their
        commits sent by ``commit`` without a task where the lane can (``_submit``)."""
        ...

    async def emit(self, event: str, data: Any = None, to: str | None = None) -> None:
        """Send ``event`` to the connection ``to``."""
        ...

    async def disconnect(self, sid: str, namespace: str | None = None, ignore_queue: bool = False) -> None:
        """Disconnect a client, its TCP connection included."""
        ...

    async def flushed(self, sid: str, bound_s: float) -> bool:
        """Return once what was sent to ``sid`` has left (a long-poll took it), or False after ``bound_s``."""
        ...


@runtime_checkable
class MessageCharging(Protocol):
    """A lane that charges the messages no handler's guard sees (the fast lane's
    ``SessionServer``): given :meth:`SocketRouter.charge`, it spends a token of the connection's
    bucket on each, and refuses one over the rate with the back-off of a refused event."""

    def charge_with(self, charge: Callable[[str], bool]) -> None:
        """Have ``charge(sid)`` spend a token for each message that reaches no handler's guard."""
        ...


# What a handler's ``submit`` returns: what its commit's reply completes, and what turns that
# reply into its result (raising as the handler would), called once that is done.
Submission = tuple[Answered, Callable[[], dict[str, Any]]]
Submit = Callable[[Connection, dict[str, Any]], Submission | None]


class SocketRouter:
    """Guards and registers event handlers on one Socket.IO server."""

    def __init__(self, sio: EventRegistry, services: Services, connections: Connections) -> None:
        self._sio = sio
        self._services = services
        self._connections = connections
        self._event_log = SocketEventLog()
        self._unknown_meter = services.metrics.unknown_event()
        self._cuts: set[asyncio.Task[None]] = set()
        self._meters: dict[str, EventMeter] = {}
        # Handlers running now, and what a stop waiting for them to finish is woken by.
        self._running = 0
        self._idle: asyncio.Event | None = None
        self._stopping = False
        sio.on("*", self._unknown)
        sio.screen_rate(self.over_rate, self.refuse)
        # Not on SocketServer's contract (a lane may not see every message through public API:
        # the stock lane's Engine.IO packets never leave python-engineio), hence asked for.
        if isinstance(sio, MessageCharging):
            sio.charge_with(self.charge)

    def on(
        self,
        event: str,
        handler: Handler,
        *,
        session_scoped: bool = True,
        changes: bool = False,
        pipelined: bool = False,
        submit: Submit | None = None,
        token_checked: bool = True,
    ) -> None:
        """Register ``handler`` for ``event``.

        ``session_scoped`` checks ``session_id`` first; ``changes`` marks an event that appends
        to that session's log (its ack must not trail its fan-out). ``pipelined`` lets the
        transport start the event while earlier ones of its connection wait for Redis
        (``protocol.order``): only for a handler whose one write is a single commit through
        ``EventLog.run`` and that writes nothing to its connection but its ack. ``submit``
        (a pipelined, session-scoped change only) is the handler without a task: it sends the
        commit at once and returns its :data:`Submission`, or None, having sent nothing, when
        the handler must run (see :meth:`_submit`). ``token_checked=False`` lets the event
        through on a connection whose token has expired (``renew_token``: what renews it).
        """
        bus = self._services.bus
        meter = self._services.metrics.event(event)
        self._meters[event] = meter

        async def guarded(sid: str, data: Any = None, *extra: Any) -> dict[str, Any]:
            started = time.perf_counter()
            hold: object | None = None
            session_id = ""
            outcome = CANCELLED  # unless it returns or raises: the server is stopping
            if self._stopping:
                self._done(meter, event, sid, "", ErrorCode.UNAVAILABLE.value, started)
                return with_seq(dict(_STOPPING), data)
            connection = self._connections.get(sid)
            if connection is not None and not self._take(connection):
                # The cheapest refusal: nothing of the message is looked at but its seq.
                self._done(meter, event, sid, "", ErrorCode.RATE_LIMITED.value, started)
                return _rate_limited(connection, data)
            self._running += 1
            try:
                if connection is None:
                    raise CodedError(ErrorCode.UNAUTHORIZED, "not connected")
                payload = self._payload(data, extra, session_scoped)
                if session_scoped:  # parsed; an unscoped event's field is the client's, unchecked
                    session_id = payload["session_id"]
                if token_checked:
                    self._check_token(connection)
                if changes:
                    session_id = payload["session_id"]
                    hold = bus.hold(session_id)
                result = await handler(connection, payload)
                outcome = OK
                return self._answered(session_id, result)
            except Exception as exc:  # every failure becomes an ack, never a stack trace
                ack = self._failed(exc, data)
                outcome = ack["error"]
                return ack
            finally:
                if hold is not None:
                    # After the ack: the transport hands it over before this task yields again,
                    # or, for a pipelined event, runs this once it has written it.
                    after_ack(bus.release, session_id, hold)
                self._left(meter, event, sid, session_id, outcome, started)

        self._sio.on(event, guarded)
        if pipelined:
            committed = None
            if submit is not None and changes and session_scoped:
                committed = functools.partial(self._submit, event, meter, submit)
            self._sio.pipeline(event, committed)

    def _submit(
        self, event: str, meter: EventMeter, submit: Submit, sid: str, data: Any, extra: bool
    ) -> _Committed | None:
        """The guard of a pipelined change sent without a task (``on``'s ``submit``): the checks
        ``guarded`` makes, then the commit sent at once; None, having done nothing, when the
        event is to go the usual way -- anything the guard or the handler would refuse (the
        usual way answers it), or a change the handler must await.

        Called by the transport in the loop step that read the message, once the commit of the
        event before it has left (``protocol.order``): nothing here yields, so the token peeked
        at is the one taken, and the hold is in place before any reply can be read.
        """
        started = time.perf_counter()
        connection = self._connections.get(sid)
        if connection is None or extra or connection.cut or self._stopping:
            return None
        if not connection.bucket.peek(self._services.clock.monotonic_s()):
            return None
        try:
            payload = self._payload(data, (), True)
            self._check_token(connection)
            submission = submit(connection, payload)
        except Exception:
            return None
        if submission is None:
            return None
        self._take(connection)
        self._running += 1
        session_id: str = payload["session_id"]
        hold = self._services.bus.hold(session_id)
        return _Committed(self, meter, event, sid, session_id, data, submission, hold, started)

    def _answered(self, session_id: str, result: dict[str, Any]) -> dict[str, Any]:
        """The ack of a handler's result."""
        if session_id:
            self._services.sessions.used(session_id)  # every use is an access (seed 001)
        return {"ok": True, **result}

    def _failed(self, exc: Exception, data: Any) -> dict[str, Any]:
        """The ack of a handler's failure: every failure becomes an ack, never a stack trace."""
        return with_seq(to_ack(exc, metrics=self._services.metrics), data)

    def _left(self, meter: EventMeter, event: str, sid: str, session_id: str, outcome: str, started: float) -> None:
        """A handler is done: counted, logged, and no longer waited for by a stop."""
        self._done(meter, event, sid, session_id, outcome, started)
        self._running -= 1
        if not self._running and self._idle is not None:
            self._idle.set()

    def stop_taking(self) -> None:
        """Answer every event from now on ``unavailable`` without running it (the server is
        stopping): the handlers running now can then finish, and their acks be sent, before
        the connections are closed, and nothing applied goes unanswered."""
        self._stopping = True

    async def finished(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for the handlers running now; how many still run then.

        The server waits for them when it stops, before its Redis client is closed: a handler
        cut off there would leave its change half made, or open the closed client again.
        """
        if self._running:
            self._idle = asyncio.Event()
            try:
                async with asyncio.timeout(timeout_s):
                    await self._idle.wait()
            except TimeoutError:
                pass
            finally:
                self._idle = None
        return self._running

    def _done(self, meter: EventMeter, event: str, sid: str, session_id: str, outcome: str, started: float) -> None:
        elapsed_s = time.perf_counter() - started
        meter.done(outcome, elapsed_s)
        if self._event_log.enabled():
            self._event_log.write(event, sid, session_id, outcome, elapsed_s)

    def over_rate(self, sid: str) -> bool:
        """Whether the connection's next event is to be refused ``rate_limited`` (no token
        left, or being cut). Spends nothing: an event then dispatched spends its token in
        its guard, so it is counted once."""
        connection = self._connections.get(sid)
        if connection is None:
            return False  # the guard answers it (unauthorized)
        return bool(connection.cut) or not connection.bucket.peek(self._services.clock.monotonic_s())

    def refuse(self, sid: str, event: str, data: Any) -> dict[str, Any]:
        """The ``rate_limited`` ack of an event :meth:`over_rate` refused, counted as its guard
        would count it (and towards the connection's flood limit)."""
        connection = self._connections.get(sid)
        if connection is not None:
            self._take(connection)
        meter = self._meters.get(event)
        name = event if meter is not None else UNKNOWN
        self._done(meter or self._unknown_meter, name, sid, "", ErrorCode.RATE_LIMITED.value, time.perf_counter())
        return _rate_limited(connection, data)

    def charge(self, sid: str) -> bool:
        """Spend one of the connection's tokens for a message that reaches no handler's guard
        (:class:`MessageCharging`); False when over its rate, the refusal counted towards the
        flood limit as an event's is, and the cut started at it. A sid not connected (any
        more) has no bucket to charge: True."""
        connection = self._connections.get(sid)
        return connection is None or self._take(connection)

    def _take(self, connection: Connection) -> bool:
        """Spend one of the connection's tokens; False (and one refusal counted) when over its
        rate. The refusal that reaches the flood limit starts the connection's cut."""
        if connection.cut:
            return False  # being disconnected: what it still sends is refused
        now_s = self._services.clock.monotonic_s()
        if connection.bucket.take(now_s):
            return True
        flood = connection.flood
        if flood is not None and flood.refused(now_s):
            connection.cut = FLOOD
            log.warning(
                "disconnecting a flooding connection: %d messages refused over the rate within %.0f s",
                flood.count, flood.window_s, extra={"sid": connection.sid, "address": connection.address},
            )  # fmt: skip
            task = asyncio.get_running_loop().create_task(self._cut(connection.sid))
            self._cuts.add(task)
            task.add_done_callback(self._cuts.discard)
        return False

    async def _cut(self, sid: str) -> None:
        # A task of its own, so it starts after the refusing ack was handed over: the client
        # reads that ack, then why, then the disconnect.
        try:
            await self._sio.emit(PROTOCOL_ERROR, _FLOOD_NOTICE, to=sid)
            # Long-polling, its acks and the notice wait for its next poll, and the disconnect
            # dropped them: it never learned which writes were applied, nor why it was cut.
            await self._sio.flushed(sid, CUT_FLUSH_S)
            await self._sio.disconnect(sid)
        except Exception:  # the connection may already be gone; nothing else to undo
            log.warning("cutting a flooding connection failed", exc_info=True, extra={"sid": sid})

    @staticmethod
    def _payload(data: Any, extra: tuple[Any, ...], session_scoped: bool) -> dict[str, Any]:
        if data is None and not session_scoped:
            data = {}
        # A missing or null payload is not one JSON object: invalid_payload, before the id.
        if extra or not isinstance(data, dict):
            raise CodedError(ErrorCode.INVALID_PAYLOAD, "the payload must be one JSON object")
        # Seed 002: a client-sent telegram_user_id is ignored (the token's is the one used),
        # not refused as an unknown field.
        checked: dict[str, Any] = dict(data)  # one copy: the handler's, never the client's
        checked.pop("telegram_user_id", None)
        if session_scoped:
            checked["session_id"] = parse_session_id(checked.get("session_id"))
        return checked

    def _check_token(self, connection: Connection) -> None:
        if connection.claims.exp <= self._services.clock.now_s():
            raise CodedError(ErrorCode.UNAUTHORIZED, "token expired; renew_token, or reconnect with a new one")

    async def _unknown(self, event: str, sid: str, *args: Any) -> dict[str, Any]:
        # A client picks the name: counted and logged as "unknown", never as a label of its own.
        # It spends a token as any event does: a flood of made-up names is a flood.
        connection = self._connections.get(sid)
        if connection is not None and not self._take(connection):
            self._done(self._unknown_meter, UNKNOWN, sid, "", ErrorCode.RATE_LIMITED.value, time.perf_counter())
            return _rate_limited(connection, args[0] if args else None)
        self._done(self._unknown_meter, UNKNOWN, sid, "", ErrorCode.UNKNOWN_EVENT.value, time.perf_counter())
        # Echoes the payload's seq as every other error ack does (PROTOCOL.md); only here, on
        # the refusal, is the payload looked at.
        refused = to_ack(CodedError(ErrorCode.UNKNOWN_EVENT, f"unknown event {event[:64]!r}"))
        return with_seq(refused, args[0] if args else None)


class _Committed:
    """A pipelined change sent without a task (``server.transport.contract.Committed``): what
    its guard does once the commit's reply is in, as ``guarded`` does after its handler."""

    __slots__ = ("_data", "_event", "_hold", "_meter", "_router", "_sid", "_started", "_submission", "session_id")

    def __init__(
        self,
        router: SocketRouter,
        meter: EventMeter,
        event: str,
        sid: str,
        session_id: str,
        data: Any,
        submission: Submission,
        hold: object,
        started: float,
    ) -> None:
        self._router = router
        self._meter = meter
        self._event = event
        self._sid = sid
        self.session_id = session_id
        self._data = data
        self._submission = submission
        self._hold = hold
        self._started = started

    @property
    def future(self) -> Answered:
        """Done when the commit's reply is in (or its connection to Redis is lost)."""
        return self._submission[0]

    def answer(self) -> dict[str, Any]:
        """The event's ack, once :attr:`future` is done and the event before it has finished;
        counted and logged as the guard counts every event. Called once."""
        router = self._router
        outcome = CANCELLED
        try:
            ack = router._answered(self.session_id, self._submission[1]())
            outcome = OK
        except Exception as exc:
            ack = router._failed(exc, self._data)
            outcome = ack["error"]
        finally:
            router._left(self._meter, self._event, self._sid, self.session_id, outcome, self._started)
        return ack

    def after_ack(self) -> None:
        """Run once the ack is written: the session's fan-out, held meanwhile, goes on."""
        self._router._services.bus.release(self.session_id, self._hold)
