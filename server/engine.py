"""The per-socket queue of the fast path (``server.fastpath``), lighter than ``asyncio.Queue``.

A thousand idle connections should cost little memory. Stock Engine.IO gives every socket an
``asyncio.Queue`` (four deques and an Event); here a socket's queue is a small list-based queue
with the same interface. It uses no private API of any library.
"""

from __future__ import annotations

import asyncio
from typing import Any


class LightQueue:
    """The subset of ``asyncio.Queue`` that Engine.IO uses, without eager allocations.

    Waiters are woken, not handed items: an item stays in the queue until a getter takes it,
    so a cancelled ``get`` (Engine.IO wraps it in ``wait_for``) can never lose one.
    """

    __slots__ = ("_getters", "_items", "_joiners", "_unfinished")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._getters: list[asyncio.Future[None]] | None = None
        self._joiners: list[asyncio.Future[None]] | None = None
        self._unfinished = 0

    def qsize(self) -> int:
        """Items waiting."""
        return len(self._items)

    def empty(self) -> bool:
        """True when no item waits."""
        return not self._items

    def idle(self) -> bool:
        """True when every item put has been taken *and* marked done (see server.outlet)."""
        return self._unfinished == 0

    def put_nowait(self, item: Any) -> None:
        """Add an item and wake one getter."""
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
        """Take the oldest item, or raise ``asyncio.QueueEmpty``."""
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.pop(0)

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
        return self._items.pop(0)

    def task_done(self) -> None:
        """Mark one taken item as processed."""
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0 and self._joiners:
            for waiter in self._joiners:
                if not waiter.done():
                    waiter.set_result(None)
            self._joiners = None

    async def join(self) -> None:
        """Wait until every item put has been marked done."""
        if self._unfinished == 0:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._joiners is None:
            self._joiners = []
        self._joiners.append(waiter)
        await waiter
