"""The node's bus: session channels in, local Socket.IO members out, nothing missed.

Each node subscribes only to the channels of sessions that have local subscribers. Every
event carries ``(epoch, offset)``; the bus remembers, per session room, the last offset it
delivered. A jump in offsets (a message lost while the pub/sub link was down, or a silent
reconnect) is filled from the session's log before anything newer is delivered; a gap the log
can no longer fill, or a new epoch, tells the room's members to resynchronise.

A member joins a room in two steps so that nothing falls between its catch-up and live
delivery: :meth:`Bus.open` adds it in *joining* mode (live events are kept for it), the
handler sends the catch-up (replay or snapshot) with :meth:`Bus.send`, then :meth:`Bus.go_live`
flushes the kept events newer than the catch-up and switches it to live delivery. A member
whose catch-up is ahead of the room (the snapshot saw offsets the room has not delivered yet)
keeps a floor: the room skips it for those offsets, so nothing the snapshot covered repeats.

The ack of a change leaves no later than the change's fan-out. A handler about to change a
session *holds* its room (:meth:`Bus.hold`) until its ack has been written
(:meth:`Bus.release`). While a hold is pending, an arriving event that could be the held
change (its offset is above every offset the room had seen when the hold was taken) waits in
the room's inbox; older events, and everything once the hold is released, go out in order.
Messages are queued per room, so a room that has to catch up from the log (a gap) does it in
its own task while the listener goes on with every other room.

No loop turn is waited for on the way (``protocol.read_end``): on a single Redis each pub/sub
read's messages are handled in that read, and the small rooms' rounds they make are written at
its end; the acks a Redis read finished are written at the end of that read, and the rounds
their hold releases let go right after them.

A room remembers the ids of the events it delivered last, and of the one it started at (where
its first members' snapshots stand). An offset it delivered coming back with another id, or a
log that holds less than the room delivered, means Redis lost writes and is handing out the
same offsets again: the room stops delivering that epoch and has the log start a new one
(``EventLog.reset_epoch``), whose notice tells every node's members to resync.

Besides session channels the bus carries *side channels* (:meth:`Bus.open_side`): a channel
whose messages go to one object of the node (the users' active-session feeds,
``server.active_feed``) instead of a room. Their lookup comes after a room's, so a session event
costs nothing more; a side channel confirmed again after a dropped link is told, as a room is,
so that it can catch up on what it missed.

A room never goes back to an epoch it left: its members were given that epoch's offsets. A
message of a left epoch is one published before the change of epoch reached this node (the
reset's answer can arrive before the pub/sub messages sent ahead of it), or a log that went back
to that epoch (Redis lost the change): the message is dropped and the log read, and a log found
in a left epoch is given a new one like any rewritten history.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis

from handlers.background import cancelled, stop_if_cancelled
from handlers.metrics import Metrics
from protocol import read_end
from protocol.errors import CodedError, ErrorCode
from protocol.events import SESSION_RESYNC
from server.active_feed import ActiveFeeds, ReadName
from server.channels import CONFIRMATIONS, MESSAGES, Channels
from server.transport.contract import Outlet, Packet
from storage.clock import Clock
from storage.events import EventLog
from storage.failures import REDIS_AWAY
from storage.keys import Keys
from storage.voice.repository import ActivePointer

log = logging.getLogger(__name__)


SUBSCRIBE_TIMEOUT_S = 5.0
# Bus.stop asks the listener to stop every STOP_RETRY_S until it has, for STOP_WAIT_S at most.
STOP_RETRY_S = 0.1
STOP_WAIT_S = 5.0
# Channels subscribed in one command at most (see Bus._apply_commands).
SUBSCRIBE_BATCH = 256
# How often one subscriber finds its session's room failed by the subscriber that opened it
# before it is answered ``unavailable`` (see Bus.open).
OPEN_ATTEMPTS = 2
# A subscription unconfirmed for this long (its shard's master is down, its slot is moving)
# means the bus cannot deliver that session: the node reports itself not ready until it can.
STALL_S = 1.0
# The listener owns the pub/sub connection; it applies queued (un)subscriptions between reads
# that wait at most this long, so a new room waits no longer than this for its SUBSCRIBE.
POLL_S = 0.02
# Pauses between failed listener rounds, doubling up to a short cap and reset by any round that
# works: a link that keeps dropping must be retried promptly (rooms wait for their SUBSCRIBE),
# and a dead Redis refuses a reconnect at once, so even the cap is no busy loop.
# After a cluster link came back, when (and how often, until it answers) the bus looks whether
# the event-id secret is still in Redis (see Bus._look_at_id_key): past a failover's seconds.
ID_KEY_LOOK_S = 10.0
BACKOFF_MIN_S = 0.02
BACKOFF_MAX_S = 0.5
# A room whose catch-up failed (Redis unreachable, a bug) tries again after this pause.
CATCH_UP_RETRY_S = 0.5
# A hold outlives its handler only if the handler hangs; past this it no longer delays anyone.
HOLD_MAX_S = 2.0
# A round of fan-out yields to the loop after this many members (acks and pings keep flowing).
ROUND_YIELD_EVERY = 64
# Under load (a round starting within BACK_TO_BACK_S of the last one's end) a room lingers for
# LINGER_SHARE of its last round's duration, at most LINGER_MAX_S, before taking the next batch:
# the changes a round's readers answer with (clients that act on what they just received) take
# a millisecond or two to come back, and joining the next round they share its writes -- the
# kernel's cost is per write, not per byte. At saturation, N = 1,000, this took the events per
# round from ~2.5 to most of what is in flight (bench/fanout.py: 255-313k -> 374-406k
# deliveries/s). The wait is bounded by a share of the round, and a room whose events come
# one at a time never waits (50 events/s x 1,000 members: rounds end ~7 ms before the next).
BACK_TO_BACK_S = 0.005
LINGER_SHARE = 0.25
LINGER_MAX_S = 0.003
# The event loop's timers are no finer than a millisecond (epoll waits whole milliseconds, rounded
# up): a linger of a few microseconds waited a whole millisecond when nothing else woke the loop,
# before every delivery of a small room's conversation. A linger under LINGER_MIN_S (a round
# under a millisecond: rooms of a few members take microseconds) is skipped; a longer one, a big
# room's, waits as before.
LINGER_MIN_S = 0.00025
# Ids of this many recent deliveries are kept per room to tell a duplicate from a rewrite.
RECENT_IDS = 256
# A room remembers this many epochs it has left: their offsets were handed out, so it never
# goes back to one of them (see Bus._drain).
LEFT_EPOCHS = 8
# A message of an epoch the room left has the log read (did Redis go back to that epoch?) at
# most this often per room: a burst of late messages costs one read, not one each.
LEFT_CHECK_S = 0.25


def _linger_s(room: Room) -> float:
    """How long a room under load waits before its next round: 0 for a room whose rounds are
    too quick for a wait the loop's timers can keep (see LINGER_MIN_S)."""
    linger = min(LINGER_MAX_S, LINGER_SHARE * room.round_s)
    return linger if linger >= LINGER_MIN_S else 0.0


@dataclass(slots=True)
class _Parsed:
    epoch: str
    offset: int
    type: str
    raw: str
    id: str = ""
    ts_ms: float = 0.0  # the event's creation (its envelope's ts), for the fan-out latency


@dataclass(slots=True)
class _Outgoing:
    """One packet of a round, with where it stands in the log (for floors)."""

    epoch: str
    offset: int
    packet: Packet
    ts_ms: float = 0.0


class SideChannel(Protocol):
    """What a side channel's owner hears from the bus (see the module docstring)."""

    def on_message(self, data: str) -> None:
        """A message published on the channel."""
        ...

    def on_resubscribed(self) -> None:
        """The channel was confirmed again after the link dropped: messages may have been missed."""
        ...


@dataclass(slots=True)
class Room:
    """Local members of one session and how far the room has been delivered."""

    session_id: str
    channel: str
    members: dict[str, Outlet | None] = field(default_factory=dict)  # sid -> its outlet (None while joining)
    joining: dict[str, list[tuple[int, Packet]]] = field(default_factory=dict)
    epoch: str = ""
    offset: int | None = None  # None while the room is being initialised
    early: list[_Parsed] = field(default_factory=list)  # messages received during initialisation
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    inbox: deque[_Parsed] = field(default_factory=deque)  # received, not yet delivered (in order)
    seen: int = 0  # highest offset received in the current epoch (delivered or in the inbox)
    holds: dict[int, tuple[int, float]] = field(default_factory=dict)  # token -> (seen then, monotonic s)
    floors: dict[str, tuple[str, int]] = field(default_factory=dict)  # sid -> (epoch, offset) its catch-up covered
    catching_up: bool = False
    recent: dict[int, str] = field(default_factory=dict)  # offset -> id of recent deliveries
    rewritten: bool = False  # this epoch's history was rewritten; waiting for the new epoch
    left: deque[str] = field(default_factory=lambda: deque(maxlen=LEFT_EPOCHS))  # epochs left, newest last
    left_checked: float = 0.0  # monotonic time a message of a left epoch last had the log read
    pending: list[_Outgoing] = field(default_factory=list)  # accepted, not yet written (next round)
    writer: asyncio.Task[None] | None = None  # the task writing the room's rounds, while it runs
    soon: bool = False  # a small room's round is scheduled as a callback (Bus._write_soon)
    written: int = 0  # offset of the last event a round has handed to the members
    round_ended: float = 0.0  # monotonic time the last round ended
    round_s: float = 0.0  # how long the last round took


class Bus:
    """Pub/sub listener and local fan-out for session events."""

    def __init__(
        self,
        *,
        redis: Redis,
        keys: Keys,
        log: EventLog,
        resolve: Callable[[str], Outlet | None],
        metrics: Metrics,
        clock: Clock,
        read_active: Callable[[str], Awaitable[ActivePointer]],
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._log = log
        self._resolve = resolve  # Socket.IO sid -> its outlet (server.transport.contract)
        self._metrics = metrics
        self._clock = clock
        self._rooms: dict[str, Room] = {}
        self._by_channel: dict[str, Room] = {}
        self._by_sid: dict[str, set[str]] = {}
        self._side: dict[str, SideChannel] = {}  # side channel -> its owner (see open_side)
        self._confirm: dict[str, asyncio.Future[None]] = {}
        self._pubsub = Channels(redis)
        # (un)subscriptions for the listener, which alone uses the pub/sub connection: redis-py's
        # PubSub is not safe for a reader and writers at once (a reconnect by one under the
        # other's read has spun the listener at 100% CPU).
        self._commands: deque[tuple[str, str]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._id_key_look: asyncio.Task[None] | None = None  # see _look_at_id_key
        self._alive = False
        self._hold_ids = itertools.count(1)
        # The loop the bus runs on, kept once started: asking asyncio for it costs a getpid()
        # system call on Python 3.11, and a small room asks once per event.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False  # start() has returned: from then on ``alive`` says how it goes
        self._soon: list[Room] = []  # small rooms whose round _write_all_soon writes next
        # Each connection's user's active voice session, on side channels (server.active_feed).
        self._feeds = ActiveFeeds(sides=self, keys=keys, read=read_active, resolve=resolve, metrics=metrics)

    # --- lifecycle ---------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        """True while the listener runs, its Redis links work and every channel is subscribed.

        A channel waiting longer than ``STALL_S`` for its subscription (its shard's master is
        down, or its slot moved and the new owner is not known yet) makes the node not ready:
        it cannot deliver that session's events until the channel is back.
        """
        return self._alive and self._task is not None and not self._task.done() and self._pubsub.stalled_for() < STALL_S

    @property
    def starting(self) -> bool:
        """True until :meth:`start` has returned (the node is starting)."""
        return not self._started

    async def start(self) -> None:
        """Connect the pub/sub link and start listening."""
        self._loop = asyncio.get_running_loop()
        # A single Redis's messages are handled in the read that brings them (_on_read); the
        # listener then only connects, (un)subscribes, and tells a dropped link.
        self._pubsub.push_to(self._on_read)
        await self._pubsub.connect()
        self._alive = True
        self._task = asyncio.create_task(self._listen(), name="sessionhub-bus")
        self._started = True

    async def stop(self) -> None:
        """Stop listening and release the pub/sub link.

        The listener is asked again until it ends: a cancellation that lands in a Redis call
        may be swallowed there (``handlers.background.cancelled``), and a listener that goes on
        would hold the server's shutdown forever (seen once, in CI on Python 3.13: the stop hung
        awaiting it). After ``STOP_WAIT_S`` it is left behind, said once, and the link closed.
        """
        task, self._task = self._task, None
        if task is not None:
            deadline = asyncio.get_running_loop().time() + STOP_WAIT_S
            while not task.done() and asyncio.get_running_loop().time() < deadline:
                task.cancel()
                await asyncio.wait({task}, timeout=STOP_RETRY_S)
            if not task.done():
                log.error("the bus listener did not stop within %.0f s; closing its link under it", STOP_WAIT_S)
        look, self._id_key_look = self._id_key_look, None
        if look is not None:
            look.cancel()
            await asyncio.wait({look}, timeout=STOP_WAIT_S)
        self._feeds.close()
        await self._pubsub.aclose()
        self._alive = False

    # --- membership --------------------------------------------------------------------
    def sessions_of(self, sid: str) -> set[str]:
        """Sessions the connection is subscribed to."""
        return self._by_sid.get(sid, set())

    async def open(self, session_id: str, sid: str) -> None:
        """Add ``sid`` to the session's room in joining mode (see the module docstring).

        The first subscriber of a session on this node opens its room (SUBSCRIBE, then the
        log's position); the others wait for it. When that first one fails -- its SUBSCRIBE
        unconfirmed for SUBSCRIBE_TIMEOUT_S under load or while a shard fails over, or Redis
        away -- only it is answered with the failure: each waiter tries once more itself, the
        first of them opening the room anew (a new SUBSCRIBE), within SUBSCRIBE_TIMEOUT_S of its
        own, and is answered ``unavailable`` (retryable) only if that fails too. One slow
        SUBSCRIBE failed all 8,151 subscribers waiting behind it with ``internal_error``.
        """
        for _attempt in range(OPEN_ATTEMPTS):
            room = self._rooms.get(session_id)
            if room is None:
                room = Room(session_id=session_id, channel=self._keys.channel(session_id))
                self._rooms[session_id] = room
                self._by_channel[room.channel] = room
                try:
                    await self._initialise(room)
                except BaseException:
                    self._drop_room(room)
                    room.ready.set()
                    raise
                break
            if not room.ready.is_set():
                try:
                    # Longer than the opener's own wait for its SUBSCRIBE (plus its read of the
                    # log's position): a waiter sees the opener's outcome, and tries again on failure.
                    async with asyncio.timeout(2 * SUBSCRIBE_TIMEOUT_S):
                        await room.ready.wait()
                except TimeoutError:
                    raise CodedError(ErrorCode.UNAVAILABLE, "the session's channel is moving; try again") from None
            if self._rooms.get(session_id) is room:
                break
        else:  # every attempt found the room failed by the subscriber that opened it
            raise CodedError(ErrorCode.UNAVAILABLE, "the session's channel is not subscribed; try again")
        room.joining[sid] = []
        room.members.setdefault(sid, None)
        sessions = self._by_sid.setdefault(sid, set())
        if session_id not in sessions:
            sessions.add(session_id)
            self._metrics.subscribed()

    def send(self, sid: str, event: str, data_json: str) -> None:
        """Send one event to one connection, in order with everything the bus sends it."""
        outlet = self._resolve(sid)
        if outlet is not None:
            packet = Packet(event, data_json)
            outlet.send(packet)
            self._metrics.sent(1, len(packet.frame))

    def go_live(self, session_id: str, sid: str, after_offset: int) -> None:
        """Flush events kept for ``sid`` that are newer than its catch-up, then deliver live."""
        room = self._rooms.get(session_id)
        if room is None or sid not in room.joining:
            return
        kept = room.joining.pop(sid)
        outlet = self._resolve(sid)
        if outlet is None:
            self.leave(session_id, sid)
            return
        room.members[sid] = outlet
        for offset, packet in kept:
            if offset > after_offset:
                outlet.send(packet)
        # A round not yet written to it (pending, or under way) may hold offsets its catch-up
        # covered: it skips those. The floor goes once a round has passed it.
        room.floors[sid] = (room.epoch, after_offset)

    def hold(self, session_id: str) -> object | None:
        """Keep the session's next local fan-out until :meth:`release` (see the module docstring)."""
        room = self._rooms.get(session_id)
        if room is None:
            return None  # nobody here to deliver to, so nobody to be ahead of the ack
        token = next(self._hold_ids)
        room.holds[token] = (max(room.seen, room.offset or 0), time.monotonic())
        return token

    def release(self, session_id: str, hold: object | None) -> None:
        """End a hold taken by :meth:`hold` and deliver what it kept."""
        room = self._rooms.get(session_id)
        if room is None or hold is None:
            return
        room.holds.pop(hold, None)  # type: ignore[call-overload]
        self._drain(room)

    def leave(self, session_id: str, sid: str) -> bool:
        """Remove ``sid`` from the session's room; True when it was a member."""
        room = self._rooms.get(session_id)
        sessions = self._by_sid.get(sid)
        if sessions is not None and session_id in sessions:
            sessions.remove(session_id)
            self._metrics.unsubscribed()
            if not sessions:
                del self._by_sid[sid]
        if room is None or sid not in room.members:
            return False
        del room.members[sid]
        room.joining.pop(sid, None)
        room.floors.pop(sid, None)
        if not room.members and room.ready.is_set():
            self._drop_room(room)
            self._commands.append(("unsubscribe", room.channel))
        return True

    def leave_all(self, sid: str) -> None:
        """Remove a disconnected connection from every room, and from its user's feed."""
        for session_id in list(self._by_sid.get(sid, ())):
            self.leave(session_id, sid)
        self._feeds.leave(sid)

    async def follow_user(self, user_id: str, sid: str, read_name: ReadName) -> tuple[ActivePointer, str]:
        """The user's active voice session and name now, and every change of either sent to the
        connection until :meth:`leave_all` (``server.active_feed``)."""
        return await self._feeds.follow(user_id, sid, read_name)

    async def follow_name(self, user_id: str, sid: str, read_name: ReadName) -> str:
        """The user's name now, and every rename sent to the connection until :meth:`leave_all`
        (``server.active_feed``)."""
        return await self._feeds.follow_name(user_id, sid, read_name)

    # --- side channels -------------------------------------------------------------------
    async def open_side(self, channel: str, owner: SideChannel) -> None:
        """Subscribe ``channel`` for ``owner``, returning once Redis confirmed it.

        Raises ``unavailable`` when the confirmation does not come within SUBSCRIBE_TIMEOUT_S
        (the channel stays wanted and subscribed when it can: call :meth:`close_side` to drop it).
        """
        self._side[channel] = owner
        confirmed = asyncio.get_running_loop().create_future()
        self._confirm[channel] = confirmed
        try:
            self._commands.append(("subscribe", channel))
            await asyncio.wait_for(confirmed, SUBSCRIBE_TIMEOUT_S)
        except TimeoutError:
            raise CodedError(ErrorCode.UNAVAILABLE, "a channel could not be subscribed; try again") from None
        finally:
            if self._confirm.get(channel) is confirmed:
                del self._confirm[channel]

    def close_side(self, channel: str) -> None:
        """Drop a side channel opened by :meth:`open_side`."""
        if self._side.pop(channel, None) is not None:
            self._commands.append(("unsubscribe", channel))

    def _wanted(self, channel: str) -> bool:
        return channel in self._by_channel or channel in self._side

    # --- internals: rooms ----------------------------------------------------------------
    async def _initialise(self, room: Room) -> None:
        loop = asyncio.get_running_loop()
        confirmed = loop.create_future()
        self._confirm[room.channel] = confirmed
        try:
            self._commands.append(("subscribe", room.channel))
            await asyncio.wait_for(confirmed, SUBSCRIBE_TIMEOUT_S)
        except TimeoutError:
            # Redis does not confirm: the shard is failing over or the slot moving. Retryable.
            raise CodedError(ErrorCode.UNAVAILABLE, "the session's channel is moving; try again") from None
        finally:
            self._confirm.pop(room.channel, None)
        position = await self._log.position(room.session_id)
        room.epoch, room.offset = position.epoch, position.offset
        room.seen = position.offset
        # The id of the event the room starts at, as for a delivered one: a Redis that loses it
        # and hands its offset out again with another event is noticed (the members' snapshots
        # hold the lost change) even when the room had delivered nothing since.
        if position.last_id:
            room.recent[position.offset] = position.last_id
        early, room.early = room.early, []
        other_epoch = False
        for parsed in early:  # what the position already covers is dropped by the drain
            if parsed.epoch == room.epoch:
                self._receive(room, parsed)
            else:
                # Older than the position (published before a change of epoch the position saw)
                # or newer (one that began after it): the message cannot tell, the log can.
                other_epoch = True
        room.ready.set()
        if other_epoch and not room.catching_up:
            self._start_catch_up(room)

    def _drop_room(self, room: Room) -> None:
        if self._rooms.get(room.session_id) is room:
            del self._rooms[room.session_id]
        if self._by_channel.get(room.channel) is room:
            del self._by_channel[room.channel]

    async def _apply_commands(self) -> None:
        """Send the queued (un)subscriptions, in order; on failure they stay queued.

        Subscriptions queued one after another go in one command (up to SUBSCRIBE_BATCH
        channels): clients reconnecting at once to many sessions open many rooms at once, and a
        command each was a round of the listener each.
        """
        commands = self._commands
        while commands:
            op, channel = commands[0]
            if op == "unsubscribe" and self._wanted(channel):
                commands.popleft()  # a new room (or side channel) took the channel meanwhile
                continue
            if op == "subscribe" and not self._wanted(channel):
                commands.popleft()  # the room (or side channel) is gone already
                continue
            if op == "unsubscribe":
                await self._pubsub.unsubscribe(channel)
                commands.popleft()
                continue
            taken = 0
            channels: list[str] = []
            for op, channel in itertools.islice(commands, SUBSCRIBE_BATCH):
                if op != "subscribe":
                    break
                taken += 1
                if self._wanted(channel) and channel not in channels:
                    channels.append(channel)
            await self._pubsub.subscribe(*channels)
            for _ in range(taken):  # only once sent: on failure they stay queued
                commands.popleft()

    # --- internals: the listener -----------------------------------------------------------
    async def _listen(self) -> None:
        backoff_s = BACKOFF_MIN_S
        me = asyncio.current_task()  # once: a round per message must not ask asyncio each time
        while not cancelled(me):
            try:
                if self._commands:
                    await self._apply_commands()
                messages = await self._pubsub.get_messages(POLL_S)
                self._link_works()
                backoff_s = BACKOFF_MIN_S
                for message in messages:
                    try:
                        self._on_message(message)
                    except Exception:  # a bug: said; the read's other messages still go out
                        log.exception("bus: a message could not be handled")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away, or a bug: never stop delivering, never spin
                stop_if_cancelled(exc)
                self._metrics.redis_error("bus", exc)
                if not isinstance(exc, REDIS_AWAY):
                    log.exception("bus listener error")
                elif self._alive:
                    log.warning("bus lost its Redis link: %s; reconnecting", exc)
                self._alive = False
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)

    def _on_read(self, messages: list[dict[str, Any]]) -> None:
        """The messages of one pub/sub read, handed over by the read itself: each is handled as
        the listener would, and the rounds they make go out once all are handled (the read's
        ``protocol.read_end`` scope) -- no task woken, no loop turn waited for."""
        self._link_works()  # a read came: the link is back (before the listener's next round)
        for message in messages:
            try:
                self._on_message(message)
            except Exception:  # a bug: said; the read's other messages still go out
                log.exception("bus: a message could not be handled")

    def _link_works(self) -> None:
        if not self._alive:
            self._metrics.bus_reconnects.inc()
            if self._pubsub.sharded:
                # One shard's link came back, maybe while another shard still has no master,
                # the one holding the secret among them: forgotten, every event write on every
                # shard read it again from there and was refused with it until that shard's
                # failover ended (audit "frozenmaster"). It is kept, and looked at.
                self._look_at_id_key()
            else:
                # Redis may have come back empty, without the deployment's id secret (EventLog).
                self._log.forget_id_key()
        self._alive = True

    def _look_at_id_key(self) -> None:
        """Forget the id secret once Redis is seen holding another one, or none (its shard came
        back empty, and the next node to write makes a new one). A look that fails (that shard
        still without a master) is tried again until one answers, the secret kept meanwhile:
        only a shard that lost its data can have lost it, and that is what the look finds."""
        if self._id_key_look is not None and not self._id_key_look.done():
            return
        self._id_key_look = asyncio.create_task(self._look_until_seen(), name="sessionhub-bus-id-key")

    async def _look_until_seen(self) -> None:
        # Not at once, nor often: a command failing on a shard without a master makes the cluster
        # client read its map anew, which sends the bus's channels to be subscribed again and
        # restarts their wait. Looked at every few tenths of a second, a node following a session
        # of the dead shard never stayed stalled long enough to say it was not ready.
        while not cancelled():  # redis-py may swallow the stop's cancellation (handlers.background)
            await asyncio.sleep(ID_KEY_LOOK_S)
            try:
                if await self._log.id_key_gone():
                    self._log.forget_id_key()
                return
            except REDIS_AWAY as exc:
                stop_if_cancelled(exc)
                log.debug("bus: the event-id secret could not be looked at: %s; again in %.0f s", exc, ID_KEY_LOOK_S)

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        channel = message["channel"]
        if isinstance(channel, bytes):
            channel = channel.decode()
        if kind in CONFIRMATIONS:
            self._confirmed(channel)
            return
        if kind not in MESSAGES:
            return
        room = self._by_channel.get(channel)
        if room is None:
            side = self._side.get(channel)  # looked up only where no room is: not a session event's cost
            if side is not None:
                raw = message["data"]
                side.on_message(raw.decode() if isinstance(raw, bytes) else raw)
            return
        data = message["data"]
        try:
            parsed = _parse(data.decode() if isinstance(data, bytes) else data)
        except (ValueError, KeyError, TypeError):
            log.warning("session %s: dropped a malformed message", room.session_id)
            return
        if room.offset is None:
            room.early.append(parsed)
        else:
            self._receive(room, parsed)

    def _confirmed(self, channel: str) -> None:
        """A channel is subscribed: a new room's wait ends, or the link came back.

        redis-py resubscribes every channel after a reconnect, so a confirmation for a room that
        is live already means messages may have been missed meanwhile: it catches up from the
        log (a quiet room would otherwise not notice until its next event).
        """
        waiter = self._confirm.get(channel)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
            return
        room = self._by_channel.get(channel)
        if room is not None and room.offset is not None and not room.catching_up:
            self._start_catch_up(room)
        elif room is None and (side := self._side.get(channel)) is not None:
            side.on_resubscribed()

    def _receive(self, room: Room, parsed: _Parsed) -> None:
        if parsed.epoch == room.epoch and parsed.offset > room.seen:
            room.seen = parsed.offset
        room.inbox.append(parsed)
        self._drain(room)

    def _held(self, room: Room, parsed: _Parsed) -> bool:
        """True while a pending hold may own ``parsed`` (it was not seen when the hold began)."""
        if not room.holds:
            return False
        now = time.monotonic()
        for token, (seen, since) in list(room.holds.items()):
            if now - since > HOLD_MAX_S:
                del room.holds[token]
            elif parsed.offset > seen or parsed.epoch != room.epoch:
                return True
        return False

    def _drain(self, room: Room) -> None:
        """Deliver the room's inbox in order, up to a held event or a gap (caught up in a task)."""
        inbox = room.inbox
        while inbox and not room.catching_up and room.offset is not None:
            parsed = inbox[0]
            if self._held(room, parsed):
                return
            if parsed.epoch == room.epoch and (room.rewritten or parsed.offset <= room.offset):
                inbox.popleft()
                if not room.rewritten and room.recent.get(parsed.offset, parsed.id) != parsed.id:
                    # The same offset, another event: Redis lost writes -- or a stray, from a
                    # cluster master failed over while frozen that ran its queued commands as it
                    # woke (its writes are discarded as it rejoins as a replica, its publish is
                    # not): every room of it resynced, "Redis lost writes" logged, nothing lost.
                    # The log decides (_backfill): a log that still holds what the room delivered
                    # makes this one a stray, dropped; one that contradicts it was rewritten.
                    if room.offset in room.recent:
                        self._start_catch_up(room)
                        return
                    self._rewritten(room)  # nothing to check the log against
                # else already delivered (a backfill got there first)
            elif parsed.epoch == room.epoch and parsed.offset == room.offset + 1:
                inbox.popleft()
                self._fan_out(room, parsed)
            elif parsed.epoch in room.left:
                inbox.popleft()  # late, or a log gone back to that epoch: the log decides
                now = time.monotonic()
                if now - room.left_checked >= LEFT_CHECK_S:
                    room.left_checked = now
                    self._start_catch_up(room)
            elif parsed.epoch != room.epoch:
                inbox.popleft()
                self._resync(room, parsed.epoch, parsed.offset, parsed.id)
            else:
                self._start_catch_up(room)

    def lost_data(self) -> None:
        """Redis lost its data under a link that stayed up (server.data_loss_watch): every live
        room reads its log again, as after a link back to a restarted Redis. A log gone resyncs
        its subscribers with the empty epoch, and their resubscribe finds the session gone."""
        self._log.forget_id_key()
        for room in list(self._rooms.values()):
            if room.offset is not None and not room.catching_up:
                self._start_catch_up(room)

    def _start_catch_up(self, room: Room) -> None:
        room.catching_up = True
        task = asyncio.create_task(self._catch_up(room))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _catch_up(self, room: Room) -> None:
        """Fill a gap from the log in the room's own task, then go on with its inbox."""
        try:
            await self._backfill(room)
        except Exception as exc:  # Redis away, or a bug: try again after a pause, never in a spin
            if isinstance(exc, REDIS_AWAY):
                log.info("session %s: backfill failed: %s", room.session_id, exc)
            else:
                log.exception("session %s: backfill error", room.session_id)
            await asyncio.sleep(CATCH_UP_RETRY_S)
        finally:
            room.catching_up = False
        if self._rooms.get(room.session_id) is room:
            self._drain(room)

    async def _backfill(self, room: Room) -> None:
        assert room.offset is not None
        if room.rewritten:
            return
        last_id = room.recent.get(room.offset)
        recovery = await self._log.read_after(room.session_id, room.epoch, room.offset, last_id)
        if recovery.position.epoch in room.left:
            # Redis went back to an epoch this room left (it lost the change of epoch): that
            # epoch's next offsets were handed out here already.
            self._rewritten(room, recovery.position.epoch)
            return
        if recovery.rolled_back:
            self._rewritten(room)
            return
        if not recovery.recovered:
            self._resync(room, recovery.position.epoch, recovery.position.offset, recovery.position.last_id)
            return
        for event in recovery.events:
            if event.offset == room.offset + 1:
                self._metrics.backfilled.inc()
                self._fan_out(room, _Parsed(room.epoch, event.offset, event.type, event.raw, event.id))

    def _rewritten(self, room: Room, log_epoch: str | None = None) -> None:
        """Stop delivering the room's epoch and have the log start a new one (see the docstring).

        ``log_epoch`` is the epoch the log is in when that is not the room's: one the room left.
        """
        rewritten = room.epoch if log_epoch is None else log_epoch
        log.warning("session %s: epoch %s was rewritten (Redis lost writes); new epoch", room.session_id, rewritten)
        if not room.rewritten:  # counted once (the resync that follows says it no more)
            self._metrics.lost_history(self._clock.now_ms())
        room.rewritten = True
        task = asyncio.create_task(self._reset(room, rewritten, room.epoch))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reset(self, room: Room, rewritten: str, room_epoch: str) -> None:
        try:
            position = await self._log.reset_epoch(room.session_id, rewritten)
        except REDIS_AWAY as exc:  # the next event or reconnect notices it again
            log.warning("session %s: could not reset the epoch: %s", room.session_id, exc)
            room.rewritten = False
            return
        if room.epoch != room_epoch or self._rooms.get(room.session_id) is not room:
            return
        if position.epoch in room.left:  # the log is (back) in an epoch this room left
            self._rewritten(room, position.epoch)
        else:  # the notice also comes through pub/sub; whichever is first resyncs the room
            self._resync(room, position.epoch, position.offset)

    def _resync(self, room: Room, epoch: str, offset: int, last_id: str = "") -> None:
        """Tell every member its history has a gap the log cannot fill (``last_id``: the id of
        the event at ``offset``, when known, kept as the room's first as in :meth:`_initialise`)."""
        if room.epoch and epoch != room.epoch and not room.rewritten:
            # A history the log no longer holds (its log gone, writes Redis lost): the operator's
            # Redis lost data, which they need to hear of (once: a rewrite found here said so);
            # a gap within an epoch (trimmed) is not.
            log.warning(
                "session %s: its log %s (Redis lost data): subscribers resync to epoch %r offset %d",
                room.session_id,
                "is gone" if epoch == "" else f"left epoch {room.epoch}",
                epoch,
                offset,
            )
            self._metrics.lost_history(self._clock.now_ms())
        else:
            log.info("session %s: resync to epoch %s offset %d", room.session_id, epoch, offset)
        if epoch != room.epoch and room.epoch:
            room.left.append(room.epoch)
        room.epoch, room.offset, room.seen = epoch, offset, offset
        room.recent.clear()
        if last_id:
            room.recent[offset] = last_id
        room.rewritten = False
        packet = Packet(SESSION_RESYNC, json.dumps({"session_id": room.session_id, "epoch": epoch, "offset": offset}))
        self._enqueue(room, _Outgoing(epoch, offset, packet))  # in order behind what is pending

    def _fan_out(self, room: Room, parsed: _Parsed) -> None:
        """Accept the room's next event: it goes out with the room's next round."""
        offset = room.offset = parsed.offset
        recent = room.recent
        recent[offset] = parsed.id
        if len(recent) > 2 * RECENT_IDS:
            for old in [o for o in recent if o <= offset - RECENT_IDS]:
                del recent[old]
        self._enqueue(room, _Outgoing(parsed.epoch, offset, Packet(parsed.type, parsed.raw), parsed.ts_ms))

    def _enqueue(self, room: Room, outgoing: _Outgoing) -> None:
        room.pending.append(outgoing)
        if room.writer is None and not room.soon:
            if len(room.members) <= ROUND_YIELD_EVERY:
                # A small room (most sessions: a few tabs or players): its round is written by
                # a callback, not a task of its own per event -- a task costs several times a
                # callback, and such a round never yields. Everything accepted before it runs
                # still goes out in that one round. It runs at the end of the read that brought
                # the event (protocol.read_end: a pub/sub read, or the acks whose written
                # releases let it go), else in the loop's next turn.
                room.soon = True
                soon = self._soon
                soon.append(room)
                if len(soon) == 1:
                    read_end.soon(self._write_all_soon, self._loop or asyncio.get_running_loop())
            else:
                room.writer = asyncio.create_task(self._write_rounds(room))

    def _write_all_soon(self) -> None:
        """The rounds of the small rooms that took events since the last call, one after another:
        the loop's other callbacks do not come between their writes (one callback for them all,
        and the subscribers' sockets written back to back)."""
        rooms, self._soon = self._soon, []
        for room in rooms:
            try:
                self._write_soon(room)
            except Exception:  # a bug: said; the other rooms' rounds still go out
                log.exception("session %s: writing a round failed", room.session_id)

    def _write_soon(self, room: Room) -> None:
        """A small room's next round, unless it must linger or yield (then its task writes it)."""
        room.soon = False
        if not room.pending or room.writer is not None:
            return
        started = time.monotonic()
        if len(room.members) > ROUND_YIELD_EVERY or (started - room.round_ended < BACK_TO_BACK_S and _linger_s(room)):
            room.writer = asyncio.create_task(self._write_rounds(room))
            return
        batch, packets, blob, members = self._start_round(room)
        for sid in members:
            self._write_round_to(room, sid, batch, packets, blob)
        self._end_round(room, batch, started)

    def _start_round(self, room: Room) -> tuple[list[_Outgoing], list[Packet], bytes, list[str]]:
        """Take the room's pending events as one round: (batch, its packets, its bytes, members)."""
        batch, room.pending = room.pending, []
        packets = [item.packet for item in batch]
        blob = b"".join(packet.frame for packet in packets)
        room.written = max(room.written, batch[-1].offset)
        members = list(room.members)
        # Counted per round, never per member (this loop is the hot path): the frames
        # and bytes of the round times its members, joining and caught-up ones included.
        self._metrics.sent(len(packets) * len(members), len(blob) * len(members))
        return batch, packets, blob, members

    def _end_round(self, room: Room, batch: list[_Outgoing], started: float) -> None:
        room.round_ended = time.monotonic()
        room.round_s = room.round_ended - started
        if batch[0].ts_ms:  # once per round, never per member: this loop is the hot path
            self._metrics.fanout_seconds.observe(max(self._clock.now_s() - batch[0].ts_ms / 1000, 0.0))
        if room.floors:
            top = batch[-1]
            for sid in [s for s, (e, o) in room.floors.items() if e != top.epoch or o <= top.offset]:
                del room.floors[sid]

    async def _write_rounds(self, room: Room) -> None:
        """Write the room's pending events in rounds: one write per member per round.

        Everything accepted while a round is written (or before the task first runs) goes out
        in the next round, so under load a member gets many events in one ``write()`` — the
        kernel's cost is per write, not per byte. The task yields every ``ROUND_YIELD_EVERY``
        members so acks, pings and new events keep flowing. What a member receives is decided
        when the round reaches it: a joining member keeps the round for its ``go_live``, a
        member whose catch-up covered some offsets skips those, a member gone is skipped.
        """
        try:
            while room.pending:
                started = time.monotonic()
                if started - room.round_ended < BACK_TO_BACK_S:
                    await asyncio.sleep(_linger_s(room))
                    started = time.monotonic()
                batch, packets, blob, members = self._start_round(room)
                for count, sid in enumerate(members):
                    if count and count % ROUND_YIELD_EVERY == 0:
                        await asyncio.sleep(0)
                    self._write_round_to(room, sid, batch, packets, blob)
                self._end_round(room, batch, started)
        finally:
            room.writer = None
            if room.pending and self._rooms.get(room.session_id) is room:
                room.writer = asyncio.create_task(self._write_rounds(room))

    @staticmethod
    def _write_round_to(room: Room, sid: str, batch: list[_Outgoing], packets: list[Packet], blob: bytes) -> None:
        if not room.joining and not room.floors:
            # The common case, kept lean: a live member gets the round in one hand-over (on
            # the fast lane, one transport write; its slow-client cut is the transport's).
            outlet = room.members.get(sid)
            if outlet is not None:
                outlet.send_batch(packets, blob)
            return
        kept = room.joining.get(sid) if room.joining else None
        if kept is not None:
            kept.extend((item.offset, item.packet) for item in batch)
            return
        outlet = room.members.get(sid)
        if outlet is None or outlet.gone():
            return
        floor = room.floors.get(sid) if room.floors else None
        if floor is not None:
            batch = [i for i in batch if i.epoch != floor[0] or i.offset > floor[1]]
            if not batch:
                return
            packets = [item.packet for item in batch]
            blob = b"".join(packet.frame for packet in packets)
        outlet.send_batch(packets, blob)  # several frames back to back: one write, one syscall


# The envelope as core/_event.lua writes it, when every string in it is plain (no escapes) and
# ts is whole digits: its fields are read off its head, and the data (spliced in by the script as
# is, forwarded to clients byte for byte) is not decoded -- one regex instead of a JSON decode
# of the whole message and a dict, for every event this node fans out. Anything else (escaped
# text, another writer's field order) is decoded as JSON.
_ENVELOPE_HEAD = re.compile(
    r'\{"session_id":"[^"\\]*","epoch":"([^"\\]*)","offset":(\d+),"id":"([^"\\]*)",'
    r'"type":"([^"\\]*)","ts":(\d+),"data":[\[{]'
)


def _parse(raw: str) -> _Parsed:
    head = _ENVELOPE_HEAD.match(raw)
    if head is not None and raw[-1:] == "}":
        epoch, offset, event_id, etype, ts = head.groups()
        return _Parsed(epoch=epoch, offset=int(offset), type=etype, raw=raw, id=event_id, ts_ms=float(ts))
    doc = json.loads(raw)
    return _Parsed(
        epoch=str(doc["epoch"]),
        offset=int(doc["offset"]),
        type=str(doc["type"]),
        raw=raw,
        id=str(doc.get("id") or ""),
        ts_ms=float(doc.get("ts") or 0),
    )
