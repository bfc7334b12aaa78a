"""The event loop of ``serve``: at most ``IO_PER_TURN`` ready descriptors handled per turn.

asyncio asks epoll for every ready descriptor at once and runs the callbacks of all of them in
one turn of its loop, before any timer, any task woken meanwhile and any other descriptor that
became ready. When thousands of clients go at once (a proxy restart, a network blip), one turn
read the end of thousands of connections, and the next ran their thousands of connection-lost
callbacks: 40 ms and more each, during which a ``/healthz`` that had already been read waited
for its handler's task to run (issue 20, finding 3). epoll is level-triggered here: a descriptor
not taken in this turn is still ready in the next, so capping the batch postpones no one for
long and starves no one; it lets the loop turn between batches, so work already under way
(a handler's next step, a timer) goes on between them.

Only public names: the selector's own epoll instance is polled through a second descriptor of
it (``select.epoll.fromfd`` of a ``dup``), and the selector keys are kept from what
``register``/``modify``/``unregister`` return.
"""

from __future__ import annotations

import asyncio
import math
import os
import select
import selectors
from typing import Any

# Ready descriptors handled per turn of the loop: at ~10-40 us of callbacks each, a few
# milliseconds of I/O between the loop's other work.
IO_PER_TURN = 256


class CappedEpollSelector(selectors.EpollSelector):
    """An epoll selector whose ``select`` returns at most ``cap`` ready descriptors."""

    def __init__(self, cap: int = IO_PER_TURN) -> None:
        super().__init__()
        self.cap = cap
        self._poll = select.epoll.fromfd(os.dup(self.fileno()))  # the same epoll instance
        self._keys: dict[int, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = super().register(fileobj, events, data)
        self._keys[key.fd] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = super().unregister(fileobj)
        self._keys.pop(key.fd, None)
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = super().modify(fileobj, events, data)
        self._keys[key.fd] = key
        return key

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # As the standard selector (whole milliseconds, rounded up), with a cap on the batch.
        if timeout is None:
            wait = -1.0
        elif timeout <= 0:
            wait = 0.0
        else:
            wait = math.ceil(timeout * 1e3) * 1e-3
        try:
            polled = self._poll.poll(wait, max(1, min(self.cap, len(self._keys))))
        except InterruptedError:
            return []
        ready = []
        for fd, event in polled:
            key = self._keys.get(fd)
            if key is None:
                continue
            mask = 0
            if event & ~select.EPOLLIN:
                mask |= selectors.EVENT_WRITE
            if event & ~select.EPOLLOUT:
                mask |= selectors.EVENT_READ
            ready.append((key, mask & key.events))
        return ready

    def close(self) -> None:
        self._poll.close()
        self._keys.clear()
        super().close()


def serve_loop() -> asyncio.AbstractEventLoop:
    """A new event loop for ``serve`` (``asyncio.Runner(loop_factory=serve_loop)``)."""
    return asyncio.SelectorEventLoop(CappedEpollSelector())
