"""Admission per loop turn: how many new connections take their next opening step at once.

asyncio runs, in one turn of its loop, every callback that became ready during the previous
one. When thousands of clients connect at once (a reconnect after a network blip or a proxy
restart), every turn held hundreds of opening steps -- a handshake parsed and answered, a
Socket.IO CONNECT with its JWT verified, a subscribe with its Redis reads -- at a millisecond
or more each, so a turn took up to a second and a ``/healthz`` that needs a few turns waited
1-2 s (issue 20, finding 3). A :class:`TurnGate` lets at most ``per_turn`` of them start per
turn and queues the rest, in arrival order, for the next turns: a turn's length is bounded by
``per_turn`` steps plus whatever else is ready, and the loop keeps answering everything else.
The total work is the same; the openings are spread over more, shorter turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections import deque
from collections.abc import AsyncIterator


class TurnGate:
    """At most ``per_turn`` entries per loop turn; the others wait, in order, for later turns.

    ``enter`` returns at once while the turn's budget lasts (no await, no task). Past it, the
    caller waits on a future that a callback scheduled for a following turn resolves, up to
    ``per_turn`` of them per turn. A waiter that is cancelled (its connection went away) is
    skipped and costs nothing of the budget.
    """

    __slots__ = ("_scheduled", "_used", "_waiters", "entered", "peak", "per_turn", "waited")

    def __init__(self, per_turn: int) -> None:
        if per_turn < 1:
            raise ValueError("per_turn must be at least 1")
        self.per_turn = per_turn
        self._used = 0  # entries counted against the current turn
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._scheduled = False  # a _next_turn callback is pending
        # Counts, for tests and metrics: entries in all, entries that had to wait, and the
        # most entries any one turn let through.
        self.entered = 0
        self.waited = 0
        self.peak = 0

    def waiting(self) -> int:
        """Entries queued for a later turn."""
        return len(self._waiters)

    async def enter(self) -> None:
        """Return when this turn (or a later one) has room for one more opening step."""
        if not self._waiters and self._used < self.per_turn:
            self._count()
            self._schedule()
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.waited += 1
        self._schedule()
        await waiter  # cancelled: _next_turn skips it

    def _count(self) -> None:
        self._used += 1
        self.entered += 1
        if self._used > self.peak:
            self.peak = self._used

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        # Runs once per turn while there is anything to count: a new turn's budget, spent
        # first on those who waited longest. Their wake-ups run in the next turn, counted in this one.
        self._scheduled = False
        self._used = 0
        waiters = self._waiters
        while waiters and self._used < self.per_turn:
            waiter = waiters.popleft()
            if waiter.done():  # cancelled meanwhile
                continue
            waiter.set_result(None)
            self._count()
        if waiters or self._used:
            self._schedule()


class FairSlots:
    """At most ``slots`` holders at once; when they are all taken, the next free one goes to
    the waiting client addresses in turn, and within an address to the connection that has
    been let in least often.

    A shared ``asyncio.Semaphore`` serves waiters in arrival order: 1,000 connections each
    sending 40 subscribes keep ~1,000 of them waiting at every moment, so anyone else's
    subscribe waited behind all of them (seconds). Here an address with many waiters gets one
    slot in turn like an address with one, and a connection that has been let in often waits
    behind one that has not: a storm, from one connection or one address, delays another
    client by a few holders' length, not by the storm's.

    ``rank`` is how often the caller's connection was let in before (its priority within the
    address: lower first, then arrival order). A waiter that is cancelled is skipped.
    """

    __slots__ = ("_addresses", "_queues", "_seq", "granted", "slots", "used", "waited")

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = slots
        self.used = 0
        self._queues: dict[str, list[tuple[int, int, asyncio.Future[None]]]] = {}  # address -> heap
        self._addresses: deque[str] = deque()  # addresses with waiters, whose turn is next first
        self._seq = 0
        self.granted = 0  # counts, for tests: holders let in, and those that had to wait
        self.waited = 0

    def waiting(self) -> int:
        """Waiters queued (cancelled ones included until their turn skips them)."""
        return sum(len(queue) for queue in self._queues.values())

    @contextlib.asynccontextmanager
    async def held(self, address: str, rank: int) -> AsyncIterator[None]:
        """Hold a slot for the block's length (see the class docstring for ``rank``)."""
        await self._acquire(address, rank)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, address: str, rank: int) -> None:
        if self.used < self.slots and not self._addresses:
            self.used += 1
            self.granted += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(address)
        if queue is None:
            queue = self._queues[address] = []
            self._addresses.append(address)
        self._seq += 1
        heapq.heappush(queue, (rank, self._seq, waiter))
        self.waited += 1
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # let in, then cancelled before it ran: the slot goes on
            raise

    def _release(self) -> None:
        self.used -= 1
        addresses, queues = self._addresses, self._queues
        while self.used < self.slots and addresses:
            address = addresses.popleft()
            queue = queues[address]
            while queue:
                waiter = heapq.heappop(queue)[2]
                if not waiter.done():  # else cancelled meanwhile
                    waiter.set_result(None)
                    self.used += 1
                    self.granted += 1
                    break
            if queue:
                addresses.append(address)  # its next waiter, after every other address's
            else:
                del queues[address]
