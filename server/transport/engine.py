"""The per-socket queue of the fast path (``server.transport.fastpath``), lighter than ``asyncio.Queue``.

A thousand idle connections should cost little memory. Stock Engine.IO gives every socket an
``asyncio.Queue`` (four deques and an Event); here a socket's queue is a small list-based queue
with the same interface. It uses no private API of any library.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

# How long closing a socket waits for its queued packets to be taken (see LightQueue.join).
JOIN_TIMEOUT_S = 5.0
# Packets one long-poll answer carries at most (Engine.IO's poll takes one item with ``get`` and
# then as many as ``get_nowait`` hands it): python-engineio's client decodes at most 16 packets of
# one payload (``Payload.max_decode_packets``) and aborts its connection past them, so a catch-up
# or a burst of 30 events between two polls cut every long-polling python-socketio client off.
# What is left waits for the next poll, which the client sends at once.
POLL_BATCH_MAX = 16


class LightQueue:
    """The subset of ``asyncio.Queue`` that Engine.IO uses, without eager allocations.

    Waiters are woken, not handed items: an item stays in the queue until a getter takes it,
    so a cancelled ``get`` (Engine.IO wraps it in ``wait_for``) can never lose one.

    The queue counts the bytes it holds: once they exceed ``limit_bytes`` it calls
    ``on_overflow`` (once) and from then on drops what is put, but the end marker ``None``.
    That is the slow-client cut for a socket whose packets wait here (a long-polling client
    that stops polling), as the WebSocket transport's buffer limit is for the rest.

    The end marker ``None`` (Engine.IO's "stop writing") is terminal: nothing put after it is
    ever written (a poll returns at it, the WebSocket writer exits at it), so such items are
    dropped, and the marker itself is not waited for by ``join``. ``join`` is bounded too
    (:data:`JOIN_TIMEOUT_S`): Engine.IO closes a socket by waiting for its queue to drain, and a
    long-polling client that never polls again must not hold that close (and so an HTTP
    answer, and the server's shutdown) forever.
    """

    __slots__ = (
        "_batch",
        "_bytes",
        "_ended",
        "_free_done",
        "_getters",
        "_items",
        "_joiners",
        "_overflowed",
        "_unfinished",
        "limit_bytes",
        "mark",
        "on_mark",
        "on_overflow",
        "sink",
    )

    def __init__(self, limit_bytes: int = 1 << 62) -> None:
        self._items: list[Any] = []
        self._getters: list[asyncio.Future[None]] | None = None
        self._joiners: list[asyncio.Future[None]] | None = None
        self._unfinished = 0
        self._bytes = 0
        self._batch = 0  # items handed since the last ``get`` (see POLL_BATCH_MAX)
        self._overflowed = False
        self._ended = False  # an end marker was put
        self._free_done = 0  # end markers taken, whose task_done() counts for nothing
        self.limit_bytes = limit_bytes
        self.on_overflow: Callable[[], None] | None = None
        # Told the bytes held once they pass ``mark`` (then it moves ``mark``): how a server-wide
        # budget counts what waits here without a check per packet. Without it, the limit.
        self.mark = limit_bytes
        self.on_mark: Callable[[int], None] | None = None
        # Write-through: while set (a socket upgraded to the direct WebSocket), what is put is
        # handed to it at once, in order, and nothing waits here: no writer task is needed.
        self.sink: Callable[[Any], None] | None = None

    def attach(self, sink: Callable[[Any], None]) -> None:
        """Hand what waits now, then everything put from now on, straight to ``sink``."""
        while self._items:
            item = self._take()
            self.task_done()
            sink(item)
        self.sink = sink

    def detach(self) -> None:
        """Keep items here again (the socket's WebSocket is gone)."""
        self.sink = None

    def qsize(self) -> int:
        """Items waiting."""
        return len(self._items)

    def empty(self) -> bool:
        """True when no item waits."""
        return not self._items

    def idle(self) -> bool:
        """True when every item put has been taken *and* marked done (see server.transport.outlet)."""
        return self._unfinished == 0

    def pending_bytes(self) -> int:
        """Bytes of packet data waiting."""
        return self._bytes

    def put_nowait(self, item: Any) -> None:
        """Add an item and wake one getter (dropped, after an overflow, unless it is ``None``)."""
        sink = self.sink
        if sink is not None and not self._items:
            if item is None:
                self._ended = True
            elif self._overflowed or self._ended:
                return
            sink(item)
            return
        if item is None:
            self._ended = True
            self._items.append(item)
        else:
            if self._overflowed or self._ended:
                return
            self._bytes += _weight(item)
            if self._bytes > self.mark:
                if self._bytes > self.limit_bytes:
                    self._overflow()
                    return
                self._passed_mark()
                if self._overflowed:  # the budget cut this very queue: nothing is kept
                    return
            self._items.append(item)
            self._unfinished += 1
        if self._getters:
            for waiter in self._getters:
                if not waiter.done():
                    waiter.set_result(None)
                    break

    async def put(self, item: Any) -> None:
        """Add an item (the queue is unbounded, so this never waits)."""
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        """Take the oldest item, or raise ``asyncio.QueueEmpty``: also once POLL_BATCH_MAX items
        were handed since the last :meth:`get` (a poll's batch is full; the rest waits)."""
        if not self._items or self._batch >= POLL_BATCH_MAX:
            raise asyncio.QueueEmpty
        self._batch += 1
        return self._take()

    async def get(self) -> Any:
        """Take the oldest item, waiting for one."""
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(waiter)
            try:
                await waiter
            finally:
                self._getters.remove(waiter)
        self._batch = 1
        return self._take()

    def _take(self) -> Any:
        item = self._items.pop(0)
        if item is None:
            self._free_done += 1
        else:
            self._bytes -= _weight(item)
        return item

    def cut(self) -> None:
        """Drop what waits and cut the socket, as passing ``limit_bytes`` does (once)."""
        if not self._overflowed:
            self._overflow()

    def _passed_mark(self) -> None:
        callback = self.on_mark
        if callback is None:
            self.mark = self.limit_bytes
        else:
            callback(self._bytes)  # it sets the next mark

    def _overflow(self) -> None:
        # Everything waiting is dropped (marked done, so nobody joins on it forever): the
        # socket is being cut, and its client will resume from its offset.
        self._overflowed = True
        dropped = [item for item in self._items if item is not None]
        self._items = [item for item in self._items if item is None]
        self._bytes = 0
        self._done(len(dropped))
        callback, self.on_overflow = self.on_overflow, None
        if callback is not None:
            callback()

    def task_done(self) -> None:
        """Mark one taken item as processed."""
        if self._free_done:
            self._free_done -= 1
            return
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._done(1)

    def _done(self, count: int) -> None:
        self._unfinished -= count
        if self._unfinished == 0 and self._joiners:
            for waiter in self._joiners:
                if not waiter.done():
                    waiter.set_result(None)
            self._joiners = None

    async def join(self) -> None:
        """Wait until every item put has been marked done, or :data:`JOIN_TIMEOUT_S` passed."""
        if self._unfinished == 0:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._joiners is None:
            self._joiners = []
        self._joiners.append(waiter)
        try:
            await asyncio.wait_for(waiter, JOIN_TIMEOUT_S)
        except TimeoutError:
            if self._joiners is not None and waiter in self._joiners:
                self._joiners.remove(waiter)


def _weight(item: Any) -> int:
    data = getattr(item, "data", None)
    return len(data) if isinstance(data, str | bytes) else 0
